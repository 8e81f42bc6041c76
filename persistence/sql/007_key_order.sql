-- depot schema, version 7: envelopes of one key are claimed strictly in the order they were
-- stored. A claim takes an envelope with a key only when no earlier envelope of that key waits:
-- the key's transaction lock alone let a claim that skipped a key's first envelopes (their key
-- was busy) take its later ones once the holder committed during the same scan. This index
-- answers "an earlier one of this key waits" with one bounded probe.
CREATE INDEX incoming_keyed ON incoming (queue, message_key, seq)
  WHERE status = 'incoming' AND message_key IS NOT NULL;
