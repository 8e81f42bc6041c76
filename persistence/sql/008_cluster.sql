-- depot schema, version 8: what a node tells its peers in its row. `uri` (version 1) is now the
-- host:port where its node actor listens (CAF's middleman), `queues` the queues it serves and
-- `peers` the numbers of the nodes it is connected to, written with every heartbeat.
ALTER TABLE nodes
  ADD COLUMN queues text[]    NOT NULL DEFAULT '{}',
  ADD COLUMN peers  integer[] NOT NULL DEFAULT '{}';
