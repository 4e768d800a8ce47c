-- 003_roster: roster logs, epochs, encrypted messages and profiles, motions.
--
-- As in 001, the signed statements are the facts (`statements`); these tables
-- index them. Message and profile rows hold only ciphertext: the server never
-- has a key that opens them.

ALTER TABLE groups
    -- The roster log's head, kept in step with roster_events under the group
    -- row's lock: appending is a compare-and-swap on (roster_seq, roster_head).
    ADD COLUMN roster_seq   int    NOT NULL DEFAULT 0 CHECK (roster_seq >= 0),
    ADD COLUMN roster_head  bytea  NULL CHECK (length(roster_head) = 32),
    ADD COLUMN epoch        bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0),
    -- True while the current epoch does not cover the current members: the
    -- server refuses every message until a new epoch is committed.
    ADD COLUMN rekey_needed boolean NOT NULL DEFAULT true,
    -- The policy retires an epoch by age or message count (epoch_seconds,
    -- epoch_messages); past either, messages are refused as for a stale roster.
    ADD COLUMN epoch_started_at timestamptz NULL,
    ADD COLUMN epoch_messages   bigint NOT NULL DEFAULT 0 CHECK (epoch_messages >= 0);

CREATE TABLE roster_events (
    group_id   bytea NOT NULL REFERENCES groups (group_id),
    seq        int   NOT NULL CHECK (seq >= 0),
    event_id   bytea NOT NULL UNIQUE REFERENCES statements (statement_id),
    op         text  NOT NULL CHECK (op IN ('create', 'add', 'remove', 'epoch', 'split')),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, seq)
);

CREATE TABLE epoch_secrets (
    -- One HPKE box per member per epoch, bound by its info to all four columns.
    group_id  bytea  NOT NULL REFERENCES groups (group_id),
    epoch     bigint NOT NULL CHECK (epoch >= 1),
    member_id bytea  NOT NULL REFERENCES members (member_id),
    sealed    bytea  NOT NULL CHECK (length(sealed) <= 4096),
    PRIMARY KEY (group_id, epoch, member_id)
);

CREATE TABLE messages (
    group_id  bytea  NOT NULL REFERENCES groups (group_id),
    epoch     bigint NOT NULL,
    sender    bytea  NOT NULL REFERENCES members (member_id),
    counter   bigint NOT NULL CHECK (counter >= 0),
    event_seq bigint NOT NULL,
    -- A counter is used once per sender and epoch: the primary key refuses repeats.
    PRIMARY KEY (group_id, epoch, sender, counter)
);

CREATE TABLE profiles (
    group_id   bytea  NOT NULL REFERENCES groups (group_id),
    member_id  bytea  NOT NULL REFERENCES members (member_id),
    epoch      bigint NOT NULL,
    sealed     bytea  NOT NULL CHECK (length(sealed) <= 70000),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, member_id)
);

CREATE TABLE motions (
    motion_id    bytea PRIMARY KEY REFERENCES statements (statement_id),
    group_id     bytea NOT NULL REFERENCES groups (group_id),
    kind         text  NOT NULL,
    status       text  NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'done')),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX motions_group_open ON motions (group_id) WHERE status = 'open';

CREATE TABLE motion_signatures (
    motion_id    bytea NOT NULL REFERENCES motions (motion_id),
    signer       bytea NOT NULL REFERENCES members (member_id),
    statement_id bytea NOT NULL UNIQUE REFERENCES statements (statement_id),
    PRIMARY KEY (motion_id, signer)
);
