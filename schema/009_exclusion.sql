-- 009_exclusion: emergency freezes (crypto/exclusion.py) and subtree review
-- (crypto/review.py).
--
-- A freeze is a roster event of the member's cell (`freeze`, lifted or
-- lapsed by `unfreeze`), a review's steps are too (`review`, `clear`,
-- `suspend`, `restore`); the log is the only source of who is frozen,
-- reviewed or suspended. The server keeps, beside it, what decides logins:
-- until when a frozen member may not log in (members.frozen_until) and
-- whether a member is suspended (members.suspended), written in the
-- transaction that appends the event.

ALTER TABLE roster_events DROP CONSTRAINT roster_events_op_check;
ALTER TABLE roster_events ADD CONSTRAINT roster_events_op_check
    CHECK (op IN ('create', 'add', 'remove', 'epoch', 'split', 'elect', 'recall', 'link', 'seat',
                  'freeze', 'unfreeze', 'review', 'clear', 'suspend', 'restore'));

ALTER TABLE members ADD COLUMN frozen_until timestamptz NULL;
ALTER TABLE members ADD COLUMN suspended boolean NOT NULL DEFAULT false;
