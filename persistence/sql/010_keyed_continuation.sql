-- depot schema, version 10: a claim for queues with keys may continue from a position, as the
-- claim for queues without keys does (version 9): with `_after_seq`, only rows of priority
-- `_priority` from seq `_after_seq` on. A node's workers of one queue continue after the last
-- batch any of them took, so that a claim starts past the rows its siblings hold and the index
-- entries of rows claimed since the last VACUUM, instead of walking all of them from the head of
-- the queue. A key's order does not rest on where the scan starts: a row is taken only when its
-- key's row before it is not waiting or was taken by the same call, wherever that row is.
--
-- The two forms of the candidate scan are the two branches of a UNION ALL, each gated by whether
-- `_after_seq` is given (a one-time filter): one statement, whose plan uses the bound as an
-- index condition in the branch that has it, and one filter, run on the candidates in order.
-- Its plan is generic (plan_cache_mode): a custom plan for one call proves the other branch
-- empty and plans a sort for it, whose cost (sorts are off) crosses the threshold of JIT
-- compilation, about half a second per call. No claim compiles (jit off).
DROP FUNCTION claim_keyed(text, integer, integer, uuid[]);
ALTER FUNCTION claim_ready(text, integer, integer, bigint) SET jit = off;

-- For queues with keys: a row with a key is taken only with its key's transaction lock, which
-- every claim of the queue on every node asks for (try, never wait): one transaction at a time
-- holds a key. The key's envelopes go in the order stored, whatever their priorities: a keyed
-- row is taken only when the row of its key just before it (one probe of incoming_keyed,
-- walking back) is not waiting or was taken by this same call. Without that check a claim that
-- skipped a key's first rows while another transaction held the key would take its later rows
-- once that transaction commits. The seqs taken so far are the call's memo, a setting local to
-- the transaction that each call starts afresh. A row goes into the memo once it is locked, so
-- a row some other statement holds (a purge) stops its key for this claim. The key's lock is
-- tried first (CASE keeps that order), so rows of keys other transactions hold cost a lookup in
-- shared memory and no probe.
--
-- The filter has effects (locks, the memo), so it runs once per candidate, in claim order, and
-- only on candidates: on the output of the candidate subquery `c`, which the planner keeps whole
-- (its branches are ordered, and a filter with volatile functions is not pushed into it). While
-- other transactions hold the keys at the head of the queue, a claim looks `_look_ahead` rows
-- ahead, not through the whole queue. The rows' addresses reach the DELETE through ARRAY(...),
-- evaluated once (a semi-join would run the filter again for each row it joins); a row's
-- address holds, the claim holds its lock. With `_ids`, only those envelopes (`_limit` NULL:
-- all it finds): a batch taken again after the transaction that first took it rolled back.
CREATE FUNCTION claim_keyed(_queue text, _limit integer, _look_ahead integer, _priority integer,
                            _after_seq bigint, _ids uuid[])
  RETURNS SETOF incoming
  LANGUAGE plpgsql
  SET search_path FROM CURRENT SET enable_seqscan = off SET enable_bitmapscan = off
  SET enable_sort = off SET jit = off SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM queue_states p WHERE p.queue = _queue AND p.paused_until > now()) THEN
    RETURN; -- paused
  END IF;
  PERFORM set_config('depot.claimed', '|', true);
  RETURN QUERY WITH taken AS (
    DELETE FROM incoming WHERE ctid = ANY(ARRAY(
      SELECT c.at FROM (
        (SELECT w.ctid AS at, w.id, w.queue, w.message_key, w.seq FROM incoming w
         WHERE _after_seq IS NULL AND w.queue = _queue AND w.status = 'incoming'
           AND w.execution_time <= now() AND (_ids IS NULL OR w.id = ANY(_ids))
         ORDER BY w.priority DESC, w.seq LIMIT _look_ahead)
        UNION ALL
        (SELECT w.ctid AS at, w.id, w.queue, w.message_key, w.seq FROM incoming w
         WHERE _after_seq IS NOT NULL AND w.queue = _queue AND w.priority = _priority
           AND w.seq >= _after_seq AND w.status = 'incoming' AND w.execution_time <= now()
           AND (_ids IS NULL OR w.id = ANY(_ids))
         ORDER BY w.priority DESC, w.seq LIMIT _look_ahead)) c
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
