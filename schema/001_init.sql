-- 001_init: the first shape of the Spokes database.
--
-- The server is untrusted by design: `statements` holds the signed facts
-- (bytes exactly as signed), and every other membership table is an index over
-- them that the server keeps to answer queries and enforce rules quickly.
-- Clients never trust these index rows; they verify the statements.
--
-- Conventions: identifiers, keys and signed bodies are bytea (never text, so
-- no encoding can change them); times are timestamptz; length CHECKs bound
-- what a client can make us store.

CREATE TABLE networks (
    network_id   bytea PRIMARY KEY CHECK (length(network_id) BETWEEN 16 AND 64),
    -- The genesis statement fixes the network's founding keys and policy.
    genesis_body bytea NOT NULL CHECK (length(genesis_body) <= 65536),
    genesis_sig  bytea NOT NULL CHECK (length(genesis_sig) <= 4096),
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE statements (
    statement_id bytea PRIMARY KEY CHECK (length(statement_id) BETWEEN 16 AND 64),
    network_id   bytea NOT NULL REFERENCES networks (network_id),
    -- The statement type as named in docs/PROTOCOL.md; the body is authoritative.
    type         text  NOT NULL CHECK (type ~ '^[a-z][a-z0-9_.-]{0,63}$'),
    author       bytea NOT NULL CHECK (length(author) BETWEEN 16 AND 64),
    subject      bytea NULL CHECK (length(subject) BETWEEN 16 AND 64),
    group_id     bytea NULL CHECK (length(group_id) BETWEEN 16 AND 64),
    body         bytea NOT NULL CHECK (length(body) <= 65536),
    sig          bytea NOT NULL CHECK (length(sig) <= 4096),
    created_at   timestamptz NOT NULL DEFAULT now()
);
-- Rosters and histories are read per network / per group / per subject, in order.
CREATE INDEX statements_network_created ON statements (network_id, created_at);
CREATE INDEX statements_group_created ON statements (group_id, created_at)
    WHERE group_id IS NOT NULL;
CREATE INDEX statements_subject ON statements (subject) WHERE subject IS NOT NULL;

CREATE TABLE groups (
    group_id         bytea PRIMARY KEY CHECK (length(group_id) BETWEEN 16 AND 64),
    network_id       bytea NOT NULL REFERENCES networks (network_id),
    kind             text  NOT NULL CHECK (kind IN ('cell', 'council')),
    -- Cells are level 0; a council of level n gathers spokespeople of level n-1.
    level            int   NOT NULL CHECK (level >= 0 AND level < 64),
    parent_id        bytea NULL REFERENCES groups (group_id),
    create_statement bytea NOT NULL REFERENCES statements (statement_id),
    created_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'cell') = (level = 0)),
    CHECK (parent_id IS NULL OR parent_id <> group_id)
);
CREATE INDEX groups_network ON groups (network_id);
CREATE INDEX groups_parent ON groups (parent_id) WHERE parent_id IS NOT NULL;

CREATE TABLE members (
    member_id            bytea PRIMARY KEY CHECK (length(member_id) BETWEEN 16 AND 64),
    network_id           bytea NOT NULL REFERENCES networks (network_id),
    -- One identity key is one member, network-wide: the UNIQUE constraint is
    -- what stops two concurrent joins from registering the same key twice.
    identity_key         bytea NOT NULL UNIQUE CHECK (length(identity_key) BETWEEN 16 AND 4096),
    kem_bundle_statement bytea NOT NULL REFERENCES statements (statement_id),
    cell_id              bytea NULL REFERENCES groups (group_id),
    -- How they came in (NULL for founders); not a FK so invite rows can be pruned.
    invite_lookup        bytea NULL,
    -- The signed join request and the invite-code proof over it: what lets
    -- the inviter's client check, itself, that this newcomer held the code.
    join_statement       bytea NULL REFERENCES statements (statement_id),
    join_proof           bytea NULL CHECK (length(join_proof) = 64),
    inviter_id           bytea NULL REFERENCES members (member_id),
    joined_at            timestamptz NOT NULL DEFAULT now(),
    admitted_at          timestamptz NULL,
    blocked_at           timestamptz NULL,
    revoked_at           timestamptz NULL,
    is_steward           boolean NOT NULL DEFAULT false,
    CHECK (inviter_id IS NULL OR inviter_id <> member_id),
    CHECK (admitted_at IS NULL OR admitted_at >= joined_at)
);
CREATE INDEX members_network ON members (network_id);
CREATE INDEX members_cell ON members (cell_id) WHERE cell_id IS NOT NULL;

CREATE TABLE invites (
    -- The lookup id is derived from the invite code; the code itself (and the
    -- key that decrypts `payload`) never reaches the server.
    lookup_id        bytea PRIMARY KEY CHECK (length(lookup_id) BETWEEN 16 AND 64),
    network_id       bytea NOT NULL REFERENCES networks (network_id),
    inviter_id       bytea NOT NULL REFERENCES members (member_id),
    cell_id          bytea NOT NULL REFERENCES groups (group_id),
    -- The redeemer proves knowledge of the code by signing with this key.
    proof_public_key bytea NOT NULL CHECK (length(proof_public_key) BETWEEN 16 AND 4096),
    payload          bytea NOT NULL CHECK (length(payload) <= 65536),
    statement_id     bytea NOT NULL REFERENCES statements (statement_id),
    expires_at       timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    redeemed_by      bytea NULL REFERENCES members (member_id),
    redeemed_at      timestamptz NULL,
    CHECK (expires_at > created_at),
    -- Redeemed is all-or-nothing; a single-use invite is spent by an
    -- UPDATE ... WHERE redeemed_by IS NULL, so two redeemers cannot both win.
    CHECK ((redeemed_by IS NULL) = (redeemed_at IS NULL))
);
CREATE INDEX invites_inviter ON invites (inviter_id);
CREATE INDEX invites_expires ON invites (expires_at) WHERE redeemed_by IS NULL;

CREATE TABLE admissions (
    -- At most one admission certificate per member.
    subject_id     bytea PRIMARY KEY REFERENCES members (member_id),
    certificate_id bytea NOT NULL UNIQUE REFERENCES statements (statement_id),
    issuer_id      bytea NOT NULL REFERENCES members (member_id),
    cell_id        bytea NOT NULL REFERENCES groups (group_id),
    issued_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (issuer_id <> subject_id)
);

CREATE TABLE vouches (
    subject_id   bytea NOT NULL REFERENCES members (member_id),
    voucher_id   bytea NOT NULL REFERENCES members (member_id),
    statement_id bytea NOT NULL UNIQUE REFERENCES statements (statement_id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- One vouch per pair: counting vouches cannot be inflated by repeats.
    PRIMARY KEY (subject_id, voucher_id),
    CHECK (subject_id <> voucher_id)
);
CREATE INDEX vouches_voucher ON vouches (voucher_id);

CREATE TABLE blocks (
    subject_id   bytea NOT NULL REFERENCES members (member_id),
    blocker_id   bytea NOT NULL REFERENCES members (member_id),
    statement_id bytea NOT NULL UNIQUE REFERENCES statements (statement_id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject_id, blocker_id),
    CHECK (subject_id <> blocker_id)
);
CREATE INDEX blocks_blocker ON blocks (blocker_id);

CREATE TABLE revocations (
    member_id    bytea PRIMARY KEY REFERENCES members (member_id),
    statement_id bytea NOT NULL UNIQUE REFERENCES statements (statement_id),
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE login_challenges (
    -- Random, single-use: login deletes the row it answers, so a replayed
    -- answer finds nothing.
    challenge  bytea PRIMARY KEY CHECK (length(challenge) BETWEEN 16 AND 64),
    member_id  bytea NOT NULL REFERENCES members (member_id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL
);
CREATE INDEX login_challenges_expires ON login_challenges (expires_at);

CREATE TABLE sessions (
    -- Only a hash of the bearer token is stored: a database leak yields no
    -- usable sessions.
    token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    member_id  bytea NOT NULL REFERENCES members (member_id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz NULL,
    CHECK (expires_at > created_at)
);
CREATE INDEX sessions_member ON sessions (member_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

CREATE TABLE rate_limits (
    -- Buckets are HMACs (see server/ratelimit.py): no IP address is stored.
    bucket       bytea NOT NULL CHECK (length(bucket) BETWEEN 16 AND 64),
    window_start timestamptz NOT NULL,
    hits         int NOT NULL CHECK (hits >= 1),
    PRIMARY KEY (bucket, window_start)
);
-- Pruning deletes old windows across all buckets.
CREATE INDEX rate_limits_window_start ON rate_limits (window_start);
