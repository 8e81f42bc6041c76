-- depot schema, version 1: the durable inbox, the outbox, dead letters and nodes.
-- Runs with search_path set to the service's schema; every name here is unqualified.

CREATE TABLE incoming (
  id             uuid PRIMARY KEY,
  queue          text        NOT NULL,
  message_type   text        NOT NULL,
  body           text        NOT NULL,
  headers        jsonb       NOT NULL DEFAULT '{}',
  status         text        NOT NULL DEFAULT 'incoming'
                 CHECK (status IN ('incoming', 'scheduled', 'handled', 'expired')),
  owner          integer     NOT NULL DEFAULT 0,
  execution_time timestamptz NOT NULL DEFAULT now(),
  deliver_by     timestamptz,
  attempts       integer     NOT NULL DEFAULT 0,
  priority       integer     NOT NULL DEFAULT 0,
  received_at    timestamptz NOT NULL DEFAULT now(),
  keep_until     timestamptz,
  tenant         text
);

-- The claim query walks this index: unowned, ready envelopes of one queue, best first.
CREATE INDEX incoming_ready ON incoming (queue, priority DESC, received_at)
  WHERE status = 'incoming' AND owner = 0;
-- The durability agent promotes due scheduled envelopes.
CREATE INDEX incoming_scheduled ON incoming (execution_time) WHERE status = 'scheduled';
-- Cleanup removes handled ids once the dedup window has passed. Rows are marked handled in
-- time order, so a BRIN index finds them; unlike a btree it costs nearly nothing per update.
-- No index covers owner: recovery scans only when a node died (see node_registry).
CREATE INDEX incoming_kept ON incoming USING brin (keep_until) WITH (autosummarize = on);

CREATE TABLE outgoing (
  id           uuid PRIMARY KEY,
  destination  text        NOT NULL,
  message_type text        NOT NULL,
  body         text        NOT NULL,
  headers      jsonb       NOT NULL DEFAULT '{}',
  owner        integer     NOT NULL DEFAULT 0,
  deliver_by   timestamptz,
  attempts     integer     NOT NULL DEFAULT 0,
  created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outgoing_ready ON outgoing (destination, created_at) WHERE owner = 0;

CREATE TABLE dead_letters (
  id                uuid PRIMARY KEY,
  queue             text        NOT NULL,
  message_type      text        NOT NULL,
  body              text        NOT NULL,
  headers           jsonb       NOT NULL DEFAULT '{}',
  exception_type    text        NOT NULL,
  exception_message text        NOT NULL,
  attempts          integer     NOT NULL DEFAULT 0,
  source            text,
  failed_at         timestamptz NOT NULL DEFAULT now(),
  replayable        boolean     NOT NULL DEFAULT true
);

CREATE TABLE nodes (
  id           uuid PRIMARY KEY,
  number       integer     NOT NULL UNIQUE CHECK (number > 0),
  uri          text        NOT NULL DEFAULT '',
  started      timestamptz NOT NULL DEFAULT now(),
  heartbeat    timestamptz NOT NULL DEFAULT now(),
  version      text        NOT NULL,
  capabilities jsonb       NOT NULL DEFAULT '[]'
);
