-- 009_exclusion: emergency freezes (crypto/exclusion.py).
--
-- A freeze is a roster event of the member's cell (`freeze`, lifted or
-- lapsed by `unfreeze`); the log is the only source of who is frozen. The
-- server keeps, beside it, until when a frozen member may not log in
-- (members.frozen_until), written in the transaction that appends the event.

ALTER TABLE roster_events DROP CONSTRAINT roster_events_op_check;
ALTER TABLE roster_events ADD CONSTRAINT roster_events_op_check
    CHECK (op IN ('create', 'add', 'remove', 'epoch', 'split', 'elect', 'recall', 'link', 'seat',
                  'freeze', 'unfreeze'));

ALTER TABLE members ADD COLUMN frozen_until timestamptz NULL;
