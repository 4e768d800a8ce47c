-- 004_revocation_chain: the revocation list is one hash chain per network.
--
-- Each revocation statement names its `seq` (0, 1, 2, …) and the previous
-- revocation's id (`prev`), so the last id commits to the whole list
-- (docs/PROTOCOL.md §7, "The revocation chain"). The server appends one only
-- if it extends the current head: a compare-and-swap on (revocation_seq,
-- revocation_head) under the network row's lock, in one transaction.
-- Revocations stored before this migration carry no position and no client
-- would accept them: a network that has any must be re-founded.

ALTER TABLE networks
    -- How many revocations the chain holds (= the next seq) and the last one's id.
    ADD COLUMN revocation_seq  int   NOT NULL DEFAULT 0 CHECK (revocation_seq >= 0),
    ADD COLUMN revocation_head bytea NULL CHECK (length(revocation_head) = 32),
    ADD CHECK ((revocation_seq = 0) = (revocation_head IS NULL));

ALTER TABLE revocations
    ADD COLUMN network_id bytea NULL REFERENCES networks (network_id),
    ADD COLUMN seq        int   NULL CHECK (seq >= 0),
    ADD UNIQUE (network_id, seq);
