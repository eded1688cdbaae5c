-- Response-cache store: drop expired entries, evict by the algorithm when the namespace is full,
-- then write the entry and its bookkeeping, all in one atomic step.
-- KEYS: 1 entry hash, 2 order zset, 3 expiry zset, 4 use counter, 5 fill lock (one hash tag: one slot)
-- ARGV: 1 member, 2 value, 3 ttl_ms, 4 capacity, 5 algo, 6 entry key prefix
-- Order scores: fifo/lifo = write sequence; lru/mru = last use sequence;
-- lfu = uses * 2^32 + last use sequence (fewest uses first, then least recent).
-- Returns the evicted members, first evicted first.
local member, ttl, capacity, algo, prefix = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6]
local SHIFT = 4294967296
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

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
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[2], 't', now)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
redis.call('PEXPIRE', KEYS[4], ttl)
redis.call('DEL', KEYS[5])
return evicted
