-- depot schema, version 3: one write per handled envelope.
-- A worker claims envelopes inside the transaction that handles them and deletes them there
-- (DELETE ... FOR UPDATE SKIP LOCKED): a crash aborts that transaction and the envelopes are
-- ready again, with no owner to record and nothing to recover. `incoming` holds only envelopes
-- still to handle. Ids that can arrive again (from a transport, or given by a caller) are
-- remembered in `received_ids` for the dedup window instead of in `incoming`.

CREATE TABLE received_ids (
  id         uuid        PRIMARY KEY,
  keep_until timestamptz NOT NULL
);
-- Ids are remembered in time order: a BRIN index finds the expired ones at almost no cost.
CREATE INDEX received_ids_kept ON received_ids USING brin (keep_until) WITH (autosummarize = on);

-- What version 2 kept for dedup stays remembered until its window ends.
INSERT INTO received_ids (id, keep_until)
  SELECT id, coalesce(keep_until, now()) FROM incoming WHERE status IN ('handled', 'expired');
DELETE FROM incoming WHERE status IN ('handled', 'expired');

-- Claim order: priority, then a sequence strictly increasing in the order envelopes were
-- inserted (received_at is one value for a whole transaction). Existing envelopes keep their
-- order.
CREATE SEQUENCE incoming_seq;
ALTER TABLE incoming ADD COLUMN seq bigint, ADD COLUMN message_key text;
UPDATE incoming i SET seq = o.n
  FROM (SELECT id, row_number() OVER (ORDER BY received_at, id) AS n FROM incoming) o
  WHERE o.id = i.id;
SELECT setval('incoming_seq', (SELECT coalesce(max(seq), 0) + 1 FROM incoming), false);
ALTER SEQUENCE incoming_seq OWNED BY incoming.seq;

-- Claims held by a node of version 2 go with its owner column: they are ready again.
DROP INDEX incoming_ready;
DROP INDEX incoming_kept;
ALTER TABLE incoming
  ALTER COLUMN seq SET DEFAULT nextval('incoming_seq'),
  ALTER COLUMN seq SET NOT NULL,
  DROP COLUMN owner,
  DROP COLUMN keep_until,
  DROP CONSTRAINT incoming_status_check,
  ADD CONSTRAINT incoming_status_check CHECK (status IN ('incoming', 'scheduled'));

-- The claim walks this index: ready envelopes of one queue, best first.
CREATE INDEX incoming_ready ON incoming (queue, priority DESC, seq) WHERE status = 'incoming';
