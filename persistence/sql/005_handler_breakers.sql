-- depot schema, version 5: circuit breakers per handler. A breaker row names the message type of
-- the handler it guards; '' is the breaker of the whole queue.
ALTER TABLE queue_breakers ADD COLUMN message_type text NOT NULL DEFAULT '';
ALTER TABLE queue_breakers DROP CONSTRAINT queue_breakers_pkey;
ALTER TABLE queue_breakers ADD PRIMARY KEY (queue, node, message_type);
