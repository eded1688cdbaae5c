-- TOTP replay guard: accept a time step only if it is newer than the subject's last accepted one.
-- KEYS[1] = last accepted step of one subject; ARGV[1] = step; ARGV[2] = ttl seconds.
-- Returns 1 when accepted (and remembered), 0 for a replayed or older step.
local last = tonumber(redis.call('GET', KEYS[1]))
local step = tonumber(ARGV[1])
if last and step <= last then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
return 1
