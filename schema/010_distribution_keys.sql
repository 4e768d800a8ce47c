-- 010_distribution_keys: every group-scoped table keyed by its group.
--
-- Past one PostgreSQL, the group tables are distributed by group with Citus,
-- co-located with `groups` (deploy/citus.md). Citus enforces a primary key, a
-- unique constraint or a foreign key between co-located tables only when it
-- includes the distribution column, so each of them must include the group.
-- Three did not; tests/store/test_distribution.py reads the catalog and keeps
-- every group table so. The id stays first in each new key, so the lookups by
-- id alone (which log holds this event, which group opened this motion) keep
-- their index.
--
-- Upgrading: code older than this migration writes signatures without their
-- group, which this schema refuses. Stop every instance before migrating
-- (deploy/README.md, Upgrades: a migration that narrows a table).

-- roster_events: an event id was unique across all logs; it is now unique
-- within its group's. That an event sits in one log only is the rule book's:
-- a roster event signs its group, seq and prev, and crypto/roster.py refuses
-- it in any other group's log.
ALTER TABLE roster_events DROP CONSTRAINT roster_events_event_id_key;
ALTER TABLE roster_events ADD UNIQUE (event_id, group_id);

-- motions: keyed by (motion, group). A motion id still names one motion: it
-- is the id of a statement stored once (statements' key, and services/motions.py
-- refuses one already recorded), and the motion signs its group, which
-- must be the group it is opened in (crypto/motion_rules.py).
ALTER TABLE motion_signatures DROP CONSTRAINT motion_signatures_motion_id_fkey;
ALTER TABLE motions DROP CONSTRAINT motions_pkey;
ALTER TABLE motions ADD PRIMARY KEY (motion_id, group_id);

-- motion_signatures: each signature carries its motion's group, in its keys
-- and in its reference to the motion.
ALTER TABLE motion_signatures ADD COLUMN group_id bytea NULL REFERENCES groups (group_id);
UPDATE motion_signatures s SET group_id = m.group_id FROM motions m WHERE m.motion_id = s.motion_id;
ALTER TABLE motion_signatures ALTER COLUMN group_id SET NOT NULL;
ALTER TABLE motion_signatures DROP CONSTRAINT motion_signatures_pkey;
ALTER TABLE motion_signatures ADD PRIMARY KEY (motion_id, group_id, signer);
ALTER TABLE motion_signatures DROP CONSTRAINT motion_signatures_statement_id_key;
ALTER TABLE motion_signatures ADD UNIQUE (statement_id, group_id);
ALTER TABLE motion_signatures ADD CONSTRAINT motion_signatures_motion_fkey
    FOREIGN KEY (motion_id, group_id) REFERENCES motions (motion_id, group_id);
