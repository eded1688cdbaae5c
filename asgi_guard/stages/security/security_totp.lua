-- TOTP step-up guard for one subject: replay protection and a lock-out after repeated wrong codes.
-- KEYS[1] = last accepted time step; KEYS[2] = wrong-code counter (same hash tag, same slot).
-- ARGV[1] = "claim" or "fail"; ARGV[2] = time step; ARGV[3] = ttl of KEYS[1] (s);
-- ARGV[4] = max wrong codes (0 = no lock-out); ARGV[5] = lock-out window (s).
-- claim -> {1, 0} accepted (and remembered), {0, 0} replayed or older step, {-1, ttl} locked out.
-- fail  -> {n, ttl}: the wrong-code count in the current window and its remaining seconds.
local max_failures = tonumber(ARGV[4])
if ARGV[1] == 'fail' then
  local failures = redis.call('INCR', KEYS[2])
  if failures == 1 then
    redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5]))
  end
  return {failures, redis.call('TTL', KEYS[2])}
end
if max_failures > 0 then
  local failures = tonumber(redis.call('GET', KEYS[2]) or '0')
  if failures >= max_failures then
    return {-1, redis.call('TTL', KEYS[2])}
  end
end
local last = tonumber(redis.call('GET', KEYS[1]))
local step = tonumber(ARGV[2])
if last and step <= last then
  return {0, 0}
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
redis.call('DEL', KEYS[2])
return {1, 0}
