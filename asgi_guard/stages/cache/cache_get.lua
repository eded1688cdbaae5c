-- Response-cache lookup; a hit also counts as a use for lru / mru / lfu.
-- The entry hash holds `n` (the Vary names, comma-joined, sorted) and one `v:<variant>` value and
-- `t:<variant>` store time per variant; the variant is SHA-1 of `name=digest` / `name!` lines over
-- the request's header fingerprint (control.secondary computes the same in Python).
-- On a miss with a lock time, the caller also takes the fill lock unless another caller holds it.
-- KEYS: 1 entry hash, 2 order zset, 3 expiry zset, 4 use counter, 5 fill lock
-- ARGV: 1 member (entry digest), 2 algo, 3 fill lock ms (0: don't lock), 4 time (script_now),
--       5.. header name, digest, ...
-- Returns {value, age_ms, ttl_ms} (server time) on a hit; on a miss false (go ahead, and fill
-- when locking) or 0 (another caller is filling this key: wait for it).
local names = redis.call('HGET', KEYS[1], 'n')
local value, stored
if names then
  local prints = {}
  for i = 5, #ARGV - 1, 2 do prints[ARGV[i]] = ARGV[i + 1] end
  local lines = {}
  for name in string.gmatch(names, '[^,]+') do
    local digest = prints[name]
    if digest then lines[#lines + 1] = name .. '=' .. digest else lines[#lines + 1] = name .. '!' end
  end
  local variant = redis.sha1hex(table.concat(lines, '\n'))
  local got = redis.call('HMGET', KEYS[1], 'v:' .. variant, 't:' .. variant)
  value, stored = got[1], got[2]
else
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
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
  local current = redis.call('ZSCORE', KEYS[2], ARGV[1])
  if current then
    local count = math.floor(tonumber(current) / SHIFT) + 1
    if count > 1048575 then count = 1048575 end
    local seq = redis.call('INCR', KEYS[4]) % SHIFT
    redis.call('ZADD', KEYS[2], 'XX', string.format('%.0f', count * SHIFT + seq), ARGV[1])
  end
end
local now = math.floor(script_now(ARGV[4]) * 1000)
return {value, now - tonumber(stored), redis.call('PTTL', KEYS[1])}
