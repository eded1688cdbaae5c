-- Response-cache store: drop expired entries, evict by the algorithm when the namespace is full,
-- then write the variant, its entry's bookkeeping and its purge tags, all in one atomic step.
-- KEYS: 1 entry hash, 2 order zset, 3 expiry zset, 4 use counter, 5 fill lock (one hash tag: one slot)
-- ARGV: 1 member, 2 value, 3 ttl_ms, 4 capacity, 5 algo, 6 entry key prefix, 7 variant,
--       8 Vary names (comma-joined), 9 max variants, 10 tag key prefix, 11 time (script_now), 12.. tags
-- Entry and tag keys are built from prefixes that carry the namespace's hash tag: same slot.
-- Order scores: fifo/lifo = write sequence; lru/mru = last use sequence;
-- lfu = uses * 2^32 + last use sequence (fewest uses first, then least recent).
-- Returns the evicted members, first evicted first.
local member, ttl, capacity, algo, prefix = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6]
local variant, names, max_variants, tag_prefix = ARGV[7], ARGV[8], tonumber(ARGV[9]), ARGV[10]
local SHIFT = 4294967296
local now = math.floor(script_now(ARGV[11]) * 1000)

local dead = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 256)
for _, m in ipairs(dead) do
  redis.call('ZREM', KEYS[2], m)
  redis.call('ZREM', KEYS[3], m)
  redis.call('DEL', prefix .. m)
end

local previous = redis.call('ZSCORE', KEYS[2], member)
local evicted = {}
if not previous then
  local size = redis.call('ZCARD', KEYS[2])
  local newest = (algo == 'lifo' or algo == 'mru')
  while size >= capacity do
    local victim
    if newest then
      victim = redis.call('ZRANGE', KEYS[2], -1, -1)[1]
    else
      victim = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
    end
    if not victim then break end
    redis.call('ZREM', KEYS[2], victim)
    redis.call('ZREM', KEYS[3], victim)
    redis.call('DEL', prefix .. victim)
    evicted[#evicted + 1] = victim
    size = size - 1
  end
end

local seq = redis.call('INCR', KEYS[4])
local score = seq
if algo == 'lfu' then
  local count = 1
  if previous then
    count = math.floor(tonumber(previous) / SHIFT) + 1
    if count > 1048575 then count = 1048575 end
  end
  score = count * SHIFT + (seq % SHIFT)
end
redis.call('ZADD', KEYS[2], string.format('%.0f', score), member)
redis.call('ZADD', KEYS[3], now + ttl, member)
local current = redis.call('HGET', KEYS[1], 'n')
if current and (current ~= names or (redis.call('HEXISTS', KEYS[1], 'v:' .. variant) == 0
    and redis.call('HLEN', KEYS[1]) >= 2 * max_variants + 1)) then
  redis.call('DEL', KEYS[1])
end
redis.call('HSET', KEYS[1], 'n', names, 'v:' .. variant, ARGV[2], 't:' .. variant, now)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
redis.call('PEXPIRE', KEYS[4], ttl)
for i = 12, #ARGV do
  local tag = tag_prefix .. ARGV[i]
  redis.call('SADD', tag, member)
  if redis.call('PTTL', tag) < ttl then redis.call('PEXPIRE', tag, ttl) end
end
redis.call('DEL', KEYS[5])
return evicted
