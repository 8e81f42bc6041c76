-- depot schema, version 4: replayable dead letters, queues paused by an error policy, and the
-- circuit breakers that are open.
-- A replay moves a dead letter back to `incoming`; it keeps the envelope's message key (its
-- place among the envelopes of the same key), tenant and priority.
ALTER TABLE dead_letters
  ADD COLUMN message_key text,
  ADD COLUMN tenant text,
  ADD COLUMN priority integer NOT NULL DEFAULT 0;

-- `dead-letters list` shows the latest first, and `--since` filters by time.
CREATE INDEX dead_letters_failed_at ON dead_letters (failed_at);

-- A queue an error policy paused: no node claims its envelopes until `paused_until`.
CREATE TABLE queue_states (
  queue        text        PRIMARY KEY,
  paused_until timestamptz NOT NULL,
  reason       text        NOT NULL,
  changed_at   timestamptz NOT NULL DEFAULT now()
);

-- The circuit breakers that are not closed, per queue and node (a node's own breaker decides
-- for its workers; this row is what operators see in `storage counts`).
CREATE TABLE queue_breakers (
  queue      text        NOT NULL,
  node       integer     NOT NULL,
  state      text        NOT NULL CHECK (state IN ('open', 'half-open')),
  open_until timestamptz,
  reason     text        NOT NULL,
  changed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (queue, node)
);
