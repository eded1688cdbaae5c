-- Response-cache lookup; a hit also counts as a use for lru / mru / lfu.
-- The entry hash holds `n` (the Vary names, comma-joined, sorted), `x` (its expiry, server ms: the
-- last fill's time + the namespace's ttl, the hash's own PEXPIRE) and one `v:<variant>` value and
-- `t:<variant>` store time per variant; the variant is SHA-1 of `name=digest` / `name!` lines over
-- the request's header fingerprint (control.secondary).
-- The caller guesses the entry's names (the route's last seen) and sends that guess's variant, so a
-- right guess costs one HMGET and the request's headers never travel; a wrong guess is answered
-- with the entry's names ({names}), and the caller looks up again with them (a route's Vary names
-- rarely change: the first lookup of a route in a process, or after the handler's Vary changed).
-- The time is derived, not read (no TIME): now = x - PTTL(entry), exact to the millisecond because
-- the fill that wrote `x` set the hash's expiry to the same instant; when this run has read TIME
-- already (fused with the rate limit), ttl = x - now instead, and no PTTL either.
-- On a miss with a lock time, the caller also takes the fill lock unless another caller holds it.
-- Commands: a hit 2 (HMGET, PTTL; 1 in a fused run) + 2 for lru/mru/lfu (INCR sequence, ZADD XX);
-- a miss 1 (HMGET) + 1 with the lock (SET NX); a wrong guess 1 (HMGET).
-- Dead members stay in the zsets until a fill sweeps them.
-- KEYS: 1 entry hash, 2 order zset, 3 expiry zset, 4 use counter, 5 fill lock
-- ARGV: 1 member (entry digest), 2 algo, 3 fill lock ms (0: don't lock), 4 time (script_now; "" =
--       derive), 5 guessed names, 6 guessed variant
-- Returns {value, age_ms, ttl_ms, names} (server time) on a hit; {names} on a wrong guess; on a miss
-- false (go ahead, and fill when locking) or 0 (another caller is filling this key: wait for it).
local got = redis.call('HMGET', KEYS[1], 'n', 'x', 'v:' .. ARGV[6], 't:' .. ARGV[6])
local names, expiry, value, stored = got[1], got[2], got[3], got[4]
if names and names ~= ARGV[5] then
  return {names}
end
local now, ttl
if value then
  if expiry and ARGV[4] == '' and not script_time_read() then
    ttl = redis.call('PTTL', KEYS[1])
    now = tonumber(expiry) - ttl
  else  -- a test clock, an entry written before `x`, or TIME already read (a fused run)
    now = math.floor(script_now(ARGV[4]) * 1000)
    ttl = expiry and tonumber(expiry) - now or redis.call('PTTL', KEYS[1])
  end
  if ttl <= 0 then value = nil end  -- expired by `x` (a test clock runs ahead of the key's own TTL)
end
if not value then
  local lock_ms = tonumber(ARGV[3])
  if lock_ms > 0 and not redis.call('SET', KEYS[5], '1', 'NX', 'PX', lock_ms) then
    return 0
  end
  return false
end
local algo = ARGV[2]
local SHIFT = 4294967296
if algo == 'lru' or algo == 'mru' then
  local seq = redis.call('INCR', KEYS[4])
  redis.call('ZADD', KEYS[2], 'XX', seq, ARGV[1])
elseif algo == 'lfu' then
  -- XX CH INCR cannot carry the sequence part; read the count, then write count + 1
  local current = redis.call('ZSCORE', KEYS[2], ARGV[1])
  if current then
    local count = math.floor(tonumber(current) / SHIFT) + 1
    if count > 1048575 then count = 1048575 end
    local seq = redis.call('INCR', KEYS[4]) % SHIFT
    redis.call('ZADD', KEYS[2], 'XX', string.format('%.0f', count * SHIFT + seq), ARGV[1])
  end
end
return {value, now - tonumber(stored), ttl, names}
