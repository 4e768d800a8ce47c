-- 008_mail: opt-in mail notices (issue 11, "Mail notices").
--
-- mail_addresses holds each opted-in member's address sealed with AES-GCM
-- under a server key that is never in the database (SPOKES_MAIL_KEY or a key
-- file), the member id as associated data: a dump of this table gives no
-- address, and a sealed address moved to another member's row does not open.
-- activity_at is when that member was last sent an "activity is waiting"
-- notice: at most one an hour (server/store/notices.py).
--
-- mail_notices is the durable outbox: one row per notice still to send. A
-- notice names a member and a fixed kind, nothing else (no group, no
-- message, no other member): its text is fixed per kind. The worker claims
-- due rows with FOR UPDATE SKIP LOCKED, moves next_attempt_at on before it
-- sends (so a crash or a mail server that is down means a retry, never a
-- loss) and deletes the row once the mail server took the message.
-- Clearing an address deletes the member's pending notices with it.

CREATE TABLE mail_addresses (
    member_id   bytea PRIMARY KEY REFERENCES members (member_id),
    -- 12-byte nonce, then the ciphertext and its 16-byte tag.
    sealed      bytea NOT NULL CHECK (length(sealed) BETWEEN 29 AND 1024),
    updated_at  timestamptz NOT NULL,
    activity_at timestamptz NULL
);

CREATE TABLE mail_notices (
    notice_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    member_id       bytea NOT NULL REFERENCES mail_addresses (member_id) ON DELETE CASCADE,
    kind            text NOT NULL
        CHECK (kind IN ('activity', 'invite_redeemed', 'motion', 'review', 'freeze',
                        'expulsion')),
    created_at      timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    attempts        int NOT NULL DEFAULT 0 CHECK (attempts >= 0)
);
-- The worker's one question: which notices are due?
CREATE INDEX mail_notices_due ON mail_notices (next_attempt_at);
-- The cascade from mail_addresses, and a member's own notices.
CREATE INDEX mail_notices_member ON mail_notices (member_id);
