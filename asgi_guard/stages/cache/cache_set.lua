-- Response-cache store: drop expired entries, evict by the algorithm when the namespace is full,
-- then write the variant, its entry's bookkeeping and its purge tags, all in one atomic step.
-- KEYS: 1 entry hash, 2 order zset, 3 expiry zset, 4 use counter, 5 fill lock (one hash tag: one slot)
-- ARGV: 1 member, 2 value, 3 ttl_ms, 4 capacity, 5 algo, 6 entry key prefix, 7 variant,
--       8 Vary names (comma-joined), 9 max variants, 10 tag key prefix, 11 time (script_now),
--       12 slack ms (keys outlive `x` by it: 0 unless a test clock runs), 13.. tags
-- Entry and tag keys are built from prefixes that carry the namespace's hash tag: same slot.
-- Order scores: fifo/lifo = write sequence; lru/mru = last use sequence;
-- lfu = uses * 2^32 + last use sequence (fewest uses first, then least recent).
-- A tag set may hold entries of an older, longer ttl (a changed policy), so its expiry only grows
-- (NX for a new set, else GT).
-- Commands, a new entry with one tag in a namespace not full: 12 (TIME, ZMSCORE, ZADD, ZCARD,
-- INCR, ZADD, HGET, HSET, PEXPIRE, SADD, PEXPIRE, DEL; + 4 once per ttl); full: + 1 (ZRANGEBYSCORE),
-- + 3 to drop what expired, + 3 to evict.
-- Returns the evicted members, first evicted first.
local member, ttl, capacity, algo, prefix = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6]
local variant, names, max_variants, tag_prefix = ARGV[7], ARGV[8], tonumber(ARGV[9]), ARGV[10]
local SHIFT = 4294967296
local now = math.floor(script_now(ARGV[11]) * 1000)
local slack = tonumber(ARGV[12])

local function drop(members)
  redis.call('ZREM', KEYS[2], unpack(members))
  redis.call('ZREM', KEYS[3], unpack(members))
  local keys = {}
  for i, m in ipairs(members) do keys[i] = prefix .. m end
  redis.call('DEL', unpack(keys))
end

-- one read: the member's expiry (here? alive?) and when the zsets' expiry was last pushed
local got = redis.call('ZMSCORE', KEYS[3], member, '\0t')
local old, pushed = tonumber(got[1]), tonumber(got[2])
redis.call('ZADD', KEYS[3], now + ttl, member)
local previous = false  -- lfu: the uses so far of a member still alive (an expired one starts again)
if old and old > now and algo == 'lfu' then previous = redis.call('ZSCORE', KEYS[2], member) end
local evicted = {}
local size = nil
if not old then
  -- a new member: make room. Expired members are swept only here, when they would take a live
  -- one's place; until then they only sit in the zsets (the entries themselves expire on time).
  -- An expired member written again keeps its slot: it was counted, and it is alive again.
  size = redis.call('ZCARD', KEYS[2])
  local over = size - capacity + 1
  if over > 0 then
    local dead = redis.call('ZRANGEBYSCORE', KEYS[3], 0, now, 'LIMIT', 0, 256)
    if #dead > 0 then
      drop(dead)
      over = over - #dead
    end
  end
  if over > 0 then
    local popped
    if algo == 'lifo' or algo == 'mru' then
      popped = redis.call('ZPOPMAX', KEYS[2], over)
    else
      popped = redis.call('ZPOPMIN', KEYS[2], over)
    end
    for i = 1, #popped, 2 do evicted[#evicted + 1] = popped[i] end
    if #evicted > 0 then
      redis.call('ZREM', KEYS[3], unpack(evicted))
      local keys = {}
      for i, m in ipairs(evicted) do keys[i] = prefix .. m end
      redis.call('DEL', unpack(keys))
    end
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
local current = redis.call('HGET', KEYS[1], 'n')
if current and (current ~= names or (redis.call('HEXISTS', KEYS[1], 'v:' .. variant) == 0
    and redis.call('HLEN', KEYS[1]) >= 2 * max_variants + 2)) then
  redis.call('DEL', KEYS[1])
end
redis.call('HSET', KEYS[1], 'n', names, 'x', now + ttl, 'v:' .. variant, ARGV[2], 't:' .. variant, now)
redis.call('PEXPIRE', KEYS[1], ttl + slack)
-- the zsets and the counter must outlive every entry: push their expiry to 2 ttl once per ttl
-- (`\0t` in the expiry zset remembers when, as -(time + 1): below the sweep's 0..now), and when
-- the order zset or the counter is new
if not pushed or size == 0 or seq == 1 or now < -pushed - 1 or now >= -pushed - 1 + ttl then
  redis.call('ZADD', KEYS[3], -(now + 1), '\0t')
  redis.call('PEXPIRE', KEYS[2], 2 * ttl + slack)
  redis.call('PEXPIRE', KEYS[3], 2 * ttl + slack)
  redis.call('PEXPIRE', KEYS[4], 2 * ttl + slack)
end
for i = 13, #ARGV do
  local tag = tag_prefix .. ARGV[i]
  redis.call('SADD', tag, member)
  if redis.call('PEXPIRE', tag, ttl + slack, 'NX') == 0 then redis.call('PEXPIRE', tag, ttl + slack, 'GT') end
end
redis.call('DEL', KEYS[5])
return evicted
