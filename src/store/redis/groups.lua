-- xs on Redis: consumer groups (src/store/groups/). Every change to a
-- group goes through here, so that it is atomic: two nodes never hand one
-- frame to two consumers. KEYS[1] is the group's meta key (for Cluster
-- routing; every key carries the namespace's hash tag).
--
-- Keys under the prefix P, for group G:
--   P.groups       set of group names
--   P.g:G:m        hash: topics, start, position (the newest frame handed
--                  out, a SCRU128 id, "" for none)
--   P.g:G:p        hash: frame id -> "consumer|deliveries|deadline ms"
--                  (consumer "" when released: nacked, or its consumer left)
--   P.g:G:d        sorted set: pending frame ids by deadline (released: 0)
--   P.g:G:c        hash: consumer -> frames pending at it
--   P.g:G:l        sorted set: consumers by when they last claimed (ms)
--
-- ARGV: P, operation, group, then the operation's arguments.

local P = ARGV[1]
local op = ARGV[2]
local G = P .. 'g:' .. ARGV[3] .. ':'

local function parse(entry)
  local consumer, deliveries, deadline = string.match(entry, '^(.*)|(%d+)|(%d+)$')
  return consumer or '', tonumber(deliveries) or 1, tonumber(deadline) or 0
end

local function assign(id, consumer, deliveries, deadline)
  redis.call('HSET', G .. 'p', id, consumer .. '|' .. deliveries .. '|' .. deadline)
  redis.call('ZADD', G .. 'd', deadline, id)
  if consumer ~= '' then redis.call('HINCRBY', G .. 'c', consumer, 1) end
end

local function unassign(consumer)
  if consumer ~= '' then
    if redis.call('HINCRBY', G .. 'c', consumer, -1) <= 0 then
      redis.call('HDEL', G .. 'c', consumer)
    end
  end
end

-- join: consumer, topics, start, position, now
if op == 'join' then
  local consumer, topics, start, position, now = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
  local have = redis.call('HGET', G .. 'm', 'topics')
  if have and have ~= topics then return {'conflict', have} end
  if not have then
    redis.call('HSET', G .. 'm', 'topics', topics, 'start', start, 'position', position)
    redis.call('SADD', P .. 'groups', ARGV[3])
  end
  redis.call('ZADD', G .. 'l', now, consumer)
  return {'ok', ''}
end

-- claim: consumer, now, deadline, max inflight, batch, expected position,
-- candidate ids after it (oldest first). Returns {stale, position, full,
-- id, deliveries, ...}: stale "1" when the position moved (another node
-- claimed): the caller rescans from the position returned. Returns
-- {'gone'} when the group was deleted, and makes none of its keys again.
if op == 'claim' then
  if redis.call('EXISTS', G .. 'm') == 0 then return {'gone'} end
  local consumer, now, deadline = ARGV[4], tonumber(ARGV[5]), ARGV[6]
  local max_inflight, batch, expected = tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9]
  redis.call('ZADD', G .. 'l', now, consumer)
  local inflight = tonumber(redis.call('HGET', G .. 'c', consumer) or '0')
  local room = math.min(max_inflight - inflight, batch)
  local out = {'0', '', '0'}
  local claimed = 0
  if room > 0 then
    local due = redis.call('ZRANGEBYSCORE', G .. 'd', '-inf', now, 'LIMIT', 0, room)
    for _, id in ipairs(due) do
      local entry = redis.call('HGET', G .. 'p', id)
      if entry then
        local old, deliveries = parse(entry)
        unassign(old)
        assign(id, consumer, deliveries + 1, deadline)
        out[#out + 1] = id
        out[#out + 1] = tostring(deliveries + 1)
        claimed = claimed + 1
      end
    end
  end
  local left = room - claimed
  if left > 0 and #ARGV >= 10 then
    local position = redis.call('HGET', G .. 'm', 'position') or ''
    if position ~= expected then
      out[1] = '1'
      out[2] = position
    else
      local last = nil
      for i = 10, math.min(#ARGV, 9 + left) do
        assign(ARGV[i], consumer, 1, deadline)
        out[#out + 1] = ARGV[i]
        out[#out + 1] = '1'
        claimed = claimed + 1
        last = ARGV[i]
      end
      if last then redis.call('HSET', G .. 'm', 'position', last) end
    end
  end
  if inflight + claimed >= max_inflight then out[3] = '1' end
  return out
end

-- settle: nack ("1" or "0"), ids. Returns the ids that were pending,
-- each followed by the consumer it was pending at.
if op == 'settle' then
  local nack = ARGV[4] == '1'
  local out = {}
  for i = 5, #ARGV do
    local id = ARGV[i]
    local entry = redis.call('HGET', G .. 'p', id)
    if entry then
      local consumer, deliveries = parse(entry)
      unassign(consumer)
      if nack then
        assign(id, '', deliveries, 0)
      else
        redis.call('HDEL', G .. 'p', id)
        redis.call('ZREM', G .. 'd', id)
      end
      out[#out + 1] = id
      out[#out + 1] = consumer
    end
  end
  return out
end

-- delete: the group and its pending entries. Returns 1, or 0 when there
-- was no such group.
if op == 'delete' then
  local existed = redis.call('EXISTS', G .. 'm')
  redis.call('DEL', G .. 'm', G .. 'p', G .. 'd', G .. 'c', G .. 'l')
  redis.call('SREM', P .. 'groups', ARGV[3])
  return existed
end

-- leave: consumer. Its pending frames are due now, for any consumer.
if op == 'leave' then
  if redis.call('EXISTS', G .. 'm') == 0 then return 0 end
  local consumer = ARGV[4]
  redis.call('ZREM', G .. 'l', consumer)
  local all = redis.call('HGETALL', G .. 'p')
  for i = 1, #all, 2 do
    local holder, deliveries = parse(all[i + 1])
    if holder == consumer then
      assign(all[i], '', deliveries, 0)
    end
  end
  redis.call('HDEL', G .. 'c', consumer)
  return 1
end

return redis.error_reply('unknown group operation ' .. tostring(op))
