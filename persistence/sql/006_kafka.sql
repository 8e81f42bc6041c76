-- depot schema, version 6: the Kafka transport.
-- One relay per store (it holds an advisory lock) sends the outbox: rows are no longer claimed
-- by an owner. It reads them in the order they were stored (seq: rows of one transaction share
-- created_at), skips those not due yet (not_before, a scheduled publish), and gives Kafka each
-- envelope's message key as the record key.
ALTER TABLE outgoing DROP COLUMN owner; -- and with it the old outgoing_ready, which named it
ALTER TABLE outgoing ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;
ALTER TABLE outgoing ADD COLUMN message_key text;
ALTER TABLE outgoing ADD COLUMN not_before timestamptz;
CREATE INDEX outgoing_ready ON outgoing (destination, seq);

-- Positions of Kafka listeners that keep their offsets in Postgres: the next offset to consume
-- of each partition, written in the transaction that stored the records before it.
CREATE TABLE kafka_offsets (
  consumer_group text        NOT NULL,
  topic          text        NOT NULL,
  partition      integer     NOT NULL,
  next_offset    bigint      NOT NULL,
  updated_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer_group, topic, partition)
);
