-- 007_councils: councils' seats, and the roster operations that change them.
--
-- A council (groups.kind = 'council') is a group of seats, one per linked
-- group, each held by that group's spokesperson (crypto/councils.py). The
-- council's roster log is the only source of who holds a seat; this table
-- indexes it, written in the transaction that appends the event, so that a
-- linked group's members can be told where their group has a seat (which
-- council logs to post a seat change to) without reading those logs.

ALTER TABLE roster_events DROP CONSTRAINT roster_events_op_check;
ALTER TABLE roster_events ADD CONSTRAINT roster_events_op_check
    CHECK (op IN ('create', 'add', 'remove', 'epoch', 'split', 'elect', 'recall', 'link', 'seat'));

CREATE TABLE council_seats (
    council_id bytea NOT NULL REFERENCES groups (group_id),
    group_id   bytea NOT NULL REFERENCES groups (group_id),
    holder     bytea NULL REFERENCES members (member_id),
    -- The motion id of the seat's last link (the linked group's election or
    -- recall, crypto/delegations.py): motions need not have been opened here.
    link_id    bytea NOT NULL CHECK (length(link_id) = 32),
    link_seq   int   NOT NULL CHECK (link_seq >= 0),
    PRIMARY KEY (council_id, group_id)
);
CREATE INDEX council_seats_by_group ON council_seats (group_id);
