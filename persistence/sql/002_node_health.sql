-- depot schema, version 2: each node reports its health in its row (healthy, unhealthy while
-- one of its actors keeps failing, failed when it must stop), for `health` to read.

ALTER TABLE nodes
  ADD COLUMN health        text NOT NULL DEFAULT 'healthy'
                           CHECK (health IN ('healthy', 'unhealthy', 'failed')),
  ADD COLUMN health_reason text NOT NULL DEFAULT '';
