-- depot schema, version 9: the claims are functions, so that they run with the plans they need
-- whatever the statistics of `incoming` say. A queue table is emptied and refilled all day: with
-- statistics taken while it was nearly empty, the planner chose for a claim a bitmap scan of the
-- whole queue and a sort (spilling to disk) over the ordered index scan that stops after the
-- batch, or a sequential scan of the inbox to find the rows to delete. Each function turns off
-- sequential and bitmap scans and sorts for its own statements only (handlers' statements keep
-- the server's settings), and PL/pgSQL keeps their plans per connection: a claim is planned once,
-- not at every call. Both take ready rows of the queue in claim order (best priority first, then
-- seq), skip rows other transactions hold (SKIP LOCKED), and delete what they take: the rows are
-- gone when the handling transaction commits and ready again when it rolls back. While the
-- queue is paused (`queue_states`) they take nothing.

-- For queues without keys: the first `_limit` ready rows no other transaction holds, locked by
-- the index scan itself. It takes no key locks: a caller that finds a key in what it took rolls
-- back and claims with claim_keyed. With `_after_seq`, a continuation: only rows of priority
-- `_priority` from seq `_after_seq` on, where the caller's last batch began. The index scan
-- then starts there instead of walking, from the head of the queue, the entries of every row
-- claimed since the last VACUUM (the claimed rows are deleted, but their index entries stay
-- until VACUUM removes them, and autovacuum comes once a minute at most). The two statements
-- differ only in that bound; they are two so that each keeps a plan that uses its own.
CREATE FUNCTION claim_ready(_queue text, _limit integer, _priority integer, _after_seq bigint)
  RETURNS SETOF incoming
  LANGUAGE plpgsql
  SET search_path FROM CURRENT SET enable_seqscan = off SET enable_bitmapscan = off
  SET enable_sort = off
AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM queue_states p WHERE p.queue = _queue AND p.paused_until > now()) THEN
    RETURN; -- paused
  END IF;
  IF _after_seq IS NULL THEN
    RETURN QUERY WITH taken AS (
      DELETE FROM incoming WHERE ctid = ANY(ARRAY(
        SELECT w.ctid FROM incoming w
        WHERE w.queue = _queue AND w.status = 'incoming' AND w.execution_time <= now()
        ORDER BY w.priority DESC, w.seq LIMIT _limit FOR UPDATE OF w SKIP LOCKED))
      RETURNING *)
    SELECT * FROM taken;
  ELSE
    RETURN QUERY WITH taken AS (
      DELETE FROM incoming WHERE ctid = ANY(ARRAY(
        SELECT w.ctid FROM incoming w
        WHERE w.queue = _queue AND w.priority = _priority AND w.seq >= _after_seq
          AND w.status = 'incoming' AND w.execution_time <= now()
        ORDER BY w.priority DESC, w.seq LIMIT _limit FOR UPDATE OF w SKIP LOCKED))
      RETURNING *)
    SELECT * FROM taken;
  END IF;
END $$;

-- For queues with keys: a row with a key is taken only with its key's transaction lock, which
-- every claim of the queue on every node asks for (try, never wait): one transaction at a time
-- holds a key. The key's envelopes go in the order stored, whatever their priorities: a keyed
-- row is taken only when the row of its key just before it (one probe of incoming_keyed,
-- walking back) is not waiting or was taken by this same call. Without that check a claim that
-- skipped a key's first rows while another transaction held the key would take its later rows
-- once that transaction commits. The seqs taken so far are the call's memo, a setting local to
-- the transaction that each call starts afresh. A row goes into the memo once it is locked, so a
-- row some other statement holds (a purge) stops its key for this claim. The key's lock is tried first (CASE keeps that order), so rows of keys other
-- transactions hold cost a lookup in shared memory and no probe.
--
-- The filter has effects (locks, the memo), so it runs once per candidate, in claim order, and
-- only on candidates: on the output of the ordered subquery `c`, which the planner keeps whole
-- (it has ORDER BY, and a filter with volatile functions is not pushed into it). While other
-- transactions hold the keys at the head of the queue, a claim looks `_look_ahead` rows ahead,
-- not through the whole queue. The rows' addresses reach the DELETE
-- through ARRAY(...), evaluated once (a semi-join would run the filter again for each row it
-- joins); a row's address holds, the claim holds its lock. With `_ids`, only those envelopes
-- (`_limit` NULL: all it finds): a batch taken again after the transaction that first took it
-- rolled back.
CREATE FUNCTION claim_keyed(_queue text, _limit integer, _look_ahead integer, _ids uuid[])
  RETURNS SETOF incoming
  LANGUAGE plpgsql
  SET search_path FROM CURRENT SET enable_seqscan = off SET enable_bitmapscan = off
  SET enable_sort = off
AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM queue_states p WHERE p.queue = _queue AND p.paused_until > now()) THEN
    RETURN; -- paused
  END IF;
  PERFORM set_config('depot.claimed', '|', true);
  RETURN QUERY WITH taken AS (
    DELETE FROM incoming WHERE ctid = ANY(ARRAY(
      SELECT c.at FROM (
        SELECT w.ctid AS at, w.id, w.queue, w.message_key, w.seq FROM incoming w
        WHERE w.queue = _queue AND w.status = 'incoming' AND w.execution_time <= now()
          AND (_ids IS NULL OR w.id = ANY(_ids))
        ORDER BY w.priority DESC, w.seq LIMIT _look_ahead) c
      WHERE CASE
        WHEN c.message_key IS NULL THEN
          EXISTS (SELECT 1 FROM incoming l WHERE l.id = c.id FOR UPDATE SKIP LOCKED)
        WHEN pg_try_advisory_xact_lock(hashtextextended(c.queue || '/' || c.message_key, 0)) THEN
          coalesce(strpos(current_setting('depot.claimed'),
            '|' || (SELECT e.seq FROM incoming e WHERE e.queue = c.queue
                    AND e.message_key = c.message_key AND e.status = 'incoming'
                    AND e.seq < c.seq ORDER BY e.seq DESC LIMIT 1) || '|') > 0, true)
          AND EXISTS (SELECT 1 FROM incoming l WHERE l.id = c.id FOR UPDATE SKIP LOCKED)
          AND set_config('depot.claimed', current_setting('depot.claimed') || c.seq || '|', true)
            IS NOT NULL
        ELSE false END
      LIMIT _limit))
    RETURNING *)
  SELECT * FROM taken;
END $$;
