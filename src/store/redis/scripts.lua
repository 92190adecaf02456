-- xs on Redis: every change to a namespace's stream goes through here, so
-- that it is atomic (one script runs at a time) and stays on one Cluster
-- slot (every key starts with the namespace prefix `{<ns>}:`, passed as
-- ARGV[1]; KEYS[1] is the main stream, named for Cluster routing).
--
-- Keys under the prefix P:
--   P.s            the stream: entry id = the frame's SCRU128 id split in
--                  two u64 halves, fields j (frame JSON), t (topic),
--                  h (payload hash or ""), i ("1" when imported)
--   P.t:<topic>    per-topic index stream (same ids, field j)
--   P.p:<prefix.>  per-prefix index stream, one per dot of the topic
--   P.last         the newest id handed out, as 32 hex digits
--   P.exp          sorted set: `time:` frames by expiry (ms)
--   P.refs         hash: payload hash -> frames referencing it
--   P.cas:<hash>   a payload
--   P.e            ephemeral frames (j, t, b = payload), trimmed
--   P.kv, P.kvlog  k/v hash and its change stream (trimmed)
--   P.lease:<kind>:<name>  the node running that processor (expires)
--   P.idem:<key>   an idempotency key: the JSON of the frame it appended,
--                  expiring after the writing node's dedup window
--   P.removed      hash: frames removed so far under each index (fields
--                  t:<topic>, p:<prefix.>, and * for all): what the
--                  retention sweepers check (`retain`)
--
-- Entry point: ARGV[2] names the operation; its arguments follow.

local P = ARGV[1]
local op = ARGV[2]

-- How long an unreferenced payload survives: an append that stored the
-- same bytes a moment ago takes it back (PERSIST) before then.
local PAYLOAD_GRACE_MS = 60000
local EPHEMERAL_KEEP = 10000
local KVLOG_KEEP = 10000

local function prefixes(topic)
  local out = {}
  for i = 1, #topic do
    if string.sub(topic, i, i) == '.' then
      out[#out + 1] = string.sub(topic, 1, i)
    end
  end
  return out
end

local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end

local function unref(hash)
  if hash == nil or hash == '' then return end
  local left = redis.call('HINCRBY', P .. 'refs', hash, -1)
  if left <= 0 then
    redis.call('HDEL', P .. 'refs', hash)
    redis.call('PEXPIRE', P .. 'cas:' .. hash, PAYLOAD_GRACE_MS)
  end
end

local function remove(sid)
  local found = redis.call('XRANGE', P .. 's', sid, sid)
  if #found == 0 then return 0 end
  local fields = found[1][2]
  local topic = field(fields, 't') or ''
  redis.call('XDEL', P .. 's', sid)
  redis.call('XDEL', P .. 't:' .. topic, sid)
  for _, prefix in ipairs(prefixes(topic)) do
    redis.call('XDEL', P .. 'p:' .. prefix, sid)
  end
  redis.call('ZREM', P .. 'exp', sid)
  unref(field(fields, 'h'))
  redis.call('HINCRBY', P .. 'removed', '*', 1)
  redis.call('HINCRBY', P .. 'removed', 't:' .. topic, 1)
  for _, prefix in ipairs(prefixes(topic)) do
    redis.call('HINCRBY', P .. 'removed', 'p:' .. prefix, 1)
  end
  return 1
end

local function store(sid, json, topic, hash, imported)
  redis.call('XADD', P .. 's', sid, 'j', json, 't', topic, 'h', hash, 'i', imported)
  redis.call('XADD', P .. 't:' .. topic, sid, 'j', json)
  for _, prefix in ipairs(prefixes(topic)) do
    redis.call('XADD', P .. 'p:' .. prefix, sid, 'j', json)
  end
  if hash ~= '' then
    redis.call('HINCRBY', P .. 'refs', hash, 1)
    redis.call('PERSIST', P .. 'cas:' .. hash)
  end
end

-- Keep the newest `keep` frames of exactly `topic`, removing at most
-- PRUNE_MAX per call (Redis runs one script at a time: a `last:1` append
-- on a topic of a million frames must not stall it; the next appends go
-- on pruning).
local PRUNE_MAX = 1000
local function prune(topic, keep)
  local index = P .. 't:' .. topic
  local excess = math.min(redis.call('XLEN', index) - keep, PRUNE_MAX)
  if excess <= 0 then return end
  for _, entry in ipairs(redis.call('XRANGE', index, '-', '+', 'COUNT', excess)) do
    remove(entry[1])
  end
end

-- The stream id of the newest frame of exactly `topic` a read shows at
-- `now` (ms): expired `time:` frames not yet swept are passed over. "" when
-- there is none.
local function topic_last(topic, now)
  local index = P .. 't:' .. topic
  local before = '+'
  while true do
    local entries = redis.call('XREVRANGE', index, before, '-', 'COUNT', 16)
    if #entries == 0 then return '' end
    for _, entry in ipairs(entries) do
      local expiry = redis.call('ZSCORE', P .. 'exp', entry[1])
      if not expiry or tonumber(expiry) > now then return entry[1] end
    end
    before = '(' .. entries[#entries][1]
  end
end

-- append: ARGV[3] = the writing node, ARGV[4] = count, ARGV[5] = now (ms),
-- ARGV[6] = the dedup window (ms, "0": keys are ignored), then per frame
-- 11 values:
--   hex id, stream id, json, topic, hash, ttl kind (f|t|l|e), ttl arg,
--   "1" when the payload's bytes follow (else ""), the payload's bytes,
--   the expected last ("" none asked, "none", or a stream id),
--   the idempotency key (or "")
-- A stored frame's payload is SET here, with its frame: one round trip.
-- The ids are the caller's; they must be above P.last, else nothing is
-- written and the answer is {"retry", last}: the caller takes new ids.
-- Else the answer is {"ok", newest, the last before ("" if none),
-- verdicts}: per frame "" (stored), "c" .. the topic's last stream id (its
-- expected last was not met: nothing written) or "d" .. the JSON of the
-- frame its idempotency key appended (a duplicate: nothing written). The
-- key is looked at first, then the expected last; frames earlier in the
-- call count, as they are stored in order.
if op == 'append' then
  local node, n = ARGV[3], tonumber(ARGV[4])
  local now, window = tonumber(ARGV[5]), tonumber(ARGV[6])
  local first = 7
  local last = redis.call('GET', P .. 'last')
  if last and ARGV[first] <= last then return {'retry', last} end
  local newest = ARGV[first]
  local verdicts = {}
  for k = 0, n - 1 do
    local a = first + k * 11
    local hex, sid, json, topic, hash = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
    local kind, arg, has_payload, payload = ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], ARGV[a + 8]
    local expect, key = ARGV[a + 9], ARGV[a + 10]
    newest = hex
    local verdict = ''
    if key ~= '' and window > 0 then
      local seen = redis.call('GET', P .. 'idem:' .. key)
      if seen then verdict = 'd' .. seen end
    end
    if verdict == '' and expect ~= '' then
      local actual = topic_last(topic, now)
      local wanted = expect
      if wanted == 'none' then wanted = '' end
      if actual ~= wanted then verdict = 'c' .. actual end
    end
    verdicts[k + 1] = verdict
    if verdict == '' then
      if kind == 'e' then
        redis.call('XADD', P .. 'e', 'MAXLEN', '~', EPHEMERAL_KEEP, '*',
          'x', hex, 'n', node, 'j', json, 't', topic, 'h', hash, 'b', payload)
      else
        if has_payload == '1' and hash ~= '' then
          redis.call('SET', P .. 'cas:' .. hash, payload)
        end
        store(sid, json, topic, hash, '')
        if kind == 't' then
          redis.call('ZADD', P .. 'exp', arg, sid)
        elseif kind == 'l' then
          prune(topic, tonumber(arg))
        end
      end
      if key ~= '' and window > 0 then
        redis.call('SET', P .. 'idem:' .. key, json, 'NX', 'PX', window)
      end
    end
  end
  redis.call('SET', P .. 'last', newest)
  return {'ok', newest, last or '', verdicts}
end

-- import: ARGV[3] = count, then per frame 6 values:
--   hex id, stream id, json, topic, hash, expiry ms or ""
-- Frames are stored verbatim, in order. The same frame again changes
-- nothing; an id not above P.last stops the call there with
-- {"conflict", last, index of that frame} (the ones before it are in).
-- Else {"ok"}.
if op == 'import' then
  local n = tonumber(ARGV[3])
  for k = 0, n - 1 do
    local a = 4 + k * 6
    local hex, sid, json, topic, hash, expiry = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
    local found = redis.call('XRANGE', P .. 's', sid, sid)
    if not (#found > 0 and field(found[1][2], 'j') == json) then
      local last = redis.call('GET', P .. 'last')
      if last and hex <= last then return {'conflict', last, k} end
      store(sid, json, topic, hash, '1')
      if expiry ~= '' then redis.call('ZADD', P .. 'exp', expiry, sid) end
      redis.call('SET', P .. 'last', hex)
    end
  end
  return {'ok'}
end

-- remove: ARGV[3] = stream id. Removing an unknown id succeeds.
if op == 'remove' then
  return remove(ARGV[3])
end

-- retain: ARGV[3] = an index (t:<topic>, p:<prefix.> or *), ARGV[4] = the
-- count of frames removed under it (P.removed) the caller last saw, then
-- stream ids. Removes them only if none of the index's frames was
-- removed since (else -1: the caller's totals are stale; it counts
-- again), so two nodes' retention sweepers never both remove "the oldest"
-- frames. Answers how many it removed.
if op == 'retain' then
  if tonumber(redis.call('HGET', P .. 'removed', ARGV[3]) or '0') ~= tonumber(ARGV[4]) then
    return -1
  end
  local n = 0
  for k = 5, #ARGV do
    n = n + remove(ARGV[k])
  end
  return n
end

-- sweep: ARGV[3] = now (ms). Removes up to 500 expired `time:` frames.
if op == 'sweep' then
  local due = redis.call('ZRANGEBYSCORE', P .. 'exp', '-inf', ARGV[3], 'LIMIT', 0, 500)
  for _, sid in ipairs(due) do
    remove(sid)
    redis.call('ZREM', P .. 'exp', sid)
  end
  return #due
end

-- kvset: ARGV[3] = key, ARGV[4] = value; kvdel: ARGV[3] = key.
if op == 'kvset' then
  redis.call('HSET', P .. 'kv', ARGV[3], ARGV[4])
  redis.call('XADD', P .. 'kvlog', 'MAXLEN', '~', KVLOG_KEEP, '*', 'k', ARGV[3], 'v', ARGV[4])
  return 1
end
if op == 'kvdel' then
  redis.call('HDEL', P .. 'kv', ARGV[3])
  redis.call('XADD', P .. 'kvlog', 'MAXLEN', '~', KVLOG_KEEP, '*', 'k', ARGV[3])
  return 1
end

-- lease: ARGV[3] = processor (kind:name), ARGV[4] = node, ARGV[5] = ms.
-- Takes a free lease or renews our own; 1 when we hold it now.
if op == 'lease' then
  local key = P .. 'lease:' .. ARGV[3]
  local holder = redis.call('GET', key)
  if holder == false or holder == ARGV[4] then
    redis.call('SET', key, ARGV[4], 'PX', ARGV[5])
    return 1
  end
  return 0
end
-- unlease: ARGV[3] = processor, ARGV[4] = node. Lets go of our own lease.
if op == 'unlease' then
  local key = P .. 'lease:' .. ARGV[3]
  if redis.call('GET', key) == ARGV[4] then redis.call('DEL', key) end
  return 1
end

return redis.error_reply('xs: unknown script operation ' .. tostring(op))
