-- 002_events: the per-group event log behind live delivery, and the server's
-- index of who is in which group.
--
-- group_events is a generic, ordered log: its bodies are opaque bytes
-- (ciphertext, signed roster events) that the services above hand it. Each
-- group numbers its events 1, 2, 3, ... with no gaps; `groups.last_seq` is the
-- counter, and its row lock is what serialises the writers of one group (see
-- server/store/events.py).

ALTER TABLE groups ADD COLUMN last_seq bigint NOT NULL DEFAULT 0 CHECK (last_seq >= 0);

-- The current roster of each group as the server indexes it. The signed
-- roster log is authoritative; this table answers "may this member read
-- this group" quickly.
CREATE TABLE group_members (
    group_id  bytea NOT NULL REFERENCES groups (group_id),
    member_id bytea NOT NULL REFERENCES members (member_id),
    added_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, member_id)
);
-- "Which groups is this member in" (login, GET /v1/groups, subscriptions).
CREATE INDEX group_members_member ON group_members (member_id);

CREATE TABLE group_events (
    group_id   bytea  NOT NULL REFERENCES groups (group_id),
    seq        bigint NOT NULL CHECK (seq >= 1),
    kind       text   NOT NULL
        CHECK (kind IN ('roster', 'epoch', 'message', 'profile', 'motion', 'signature')),
    -- The member who sent it; NULL for events the server itself records.
    sender     bytea  NULL CHECK (length(sender) BETWEEN 16 AND 64),
    body       bytea  NOT NULL CHECK (length(body) <= 262144),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, seq)
);
-- Bodies are ciphertext: compressing them only costs CPU.
ALTER TABLE group_events ALTER COLUMN body SET STORAGE EXTERNAL;
