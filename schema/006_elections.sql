-- 006_elections: a group's spokesperson is elected and recalled by roster events.
--
-- `elect` and `recall` carry a motion and the signatures of a quorum of the
-- group's current members (crypto/elections.py); the server checks them with
-- the same rule book as every client before it appends the event.

ALTER TABLE roster_events DROP CONSTRAINT roster_events_op_check;
ALTER TABLE roster_events ADD CONSTRAINT roster_events_op_check
    CHECK (op IN ('create', 'add', 'remove', 'epoch', 'split', 'elect', 'recall'));
