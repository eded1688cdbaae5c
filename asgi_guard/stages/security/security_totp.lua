-- TOTP step-up guard for one subject: replay protection and a lock-out after repeated wrong codes.
-- KEYS[1] = last accepted step (hash v, exp); KEYS[2] = wrong-code window (hash v = count, exp);
-- same hash tag, same slot. A state whose exp <= now is gone (the key TTL only collects garbage).
-- ARGV[1] = "claim" or "fail"; ARGV[2] = time step; ARGV[3] = how long a step is kept (s);
-- ARGV[4] = max wrong codes (0 = no lock-out); ARGV[5] = lock-out window (s);
-- ARGV[6] = now (s) or "" for the server clock (TIME); ARGV[7] = garbage-collection slack (ms).
-- claim -> {1, '0'} accepted (and remembered), {0, '0'} replayed or older step, {-1, left} locked out.
-- fail  -> {n, left}: the wrong-code count in the current window and its remaining seconds.
local now = script_now(ARGV[6])
local slack = tonumber(ARGV[7])

local function num(x)
  return string.format('%.17g', x)
end

local function live(key)
  local h = redis.call('HMGET', key, 'v', 'exp')
  local exp = tonumber(h[2])
  if h[1] and exp and exp > now then return tonumber(h[1]), exp end
  return nil, nil
end

local function put(key, value, exp)
  redis.call('HSET', key, 'v', value, 'exp', num(exp))
  redis.call('PEXPIRE', key, math.ceil((exp - now) * 1000) + slack)
end

if ARGV[1] == 'fail' then
  local count, ends = live(KEYS[2])
  if count == nil then count, ends = 0, now + tonumber(ARGV[5]) end
  count = count + 1
  put(KEYS[2], count, ends)
  return {count, num(ends - now)}
end
local max_failures = tonumber(ARGV[4])
if max_failures > 0 then
  local count, ends = live(KEYS[2])
  if count ~= nil and count >= max_failures then
    return {-1, num(ends - now)}
  end
end
local last = live(KEYS[1])
local step = tonumber(ARGV[2])
if last ~= nil and step <= last then
  return {0, '0'}
end
put(KEYS[1], ARGV[2], now + tonumber(ARGV[3]))
redis.call('DEL', KEYS[2])
return {1, '0'}
