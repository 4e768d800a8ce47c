-- 005_former_members: what a member removed from a group may still read of it.
--
-- A roster event that takes a member off a group (a split that moves them, a
-- leave, a revocation) ends their place in ``group_members``. They keep what
-- they could read while they were in it: the group's events up to and
-- including that event (`last_seq`, its seq among ``group_events``), the
-- roster log up to it (`roster_seq`) and their own epoch boxes (which exist
-- only for the epochs they were in), and nothing later (docs/PROTOCOL.md §11,
-- "History after a split"). Written in the transaction that appends the event.

CREATE TABLE former_group_members (
    group_id   bytea  NOT NULL REFERENCES groups (group_id),
    member_id  bytea  NOT NULL REFERENCES members (member_id),
    last_seq   bigint NOT NULL CHECK (last_seq >= 1),
    roster_seq int    NOT NULL CHECK (roster_seq >= 1),
    PRIMARY KEY (group_id, member_id)
);
