-- One route's circuit, shared by every process: the machine of reference.py (pybreaker's) in one atomic call.
-- KEYS[1] hash: state (0 closed, 1 half-open, 2 open), failures, opened_at, trial_until, trial_token.
-- ARGV[1] op: acquire | record | release; ARGV[2] threshold; ARGV[3] reset timeout (s);
-- ARGV[4] trial lease (s); ARGV[5] token (request id); ARGV[6] ok (1/0); ARGV[7] was a trial (1/0);
-- ARGV[8] now in seconds, or "" to use the server clock (TIME; tests pass their clock).
-- Reply: {allowed 0/1, state, trial 0/1, retry_after (seconds, %.17g), failures}.
local key = KEYS[1]
local op, threshold, timeout, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local token = ARGV[5]
local now = script_now(ARGV[8])
local h = redis.call('HMGET', key, 'state', 'failures', 'opened_at', 'trial_until', 'trial_token')
local state = tonumber(h[1] or '0')
local failures = tonumber(h[2] or '0')
local opened_at = tonumber(h[3] or '0')
local trial_until = tonumber(h[4] or '0')
local life = math.ceil(timeout + lease) + 3600

local function num(x)
  return string.format('%.17g', x)
end

local function keep()
  redis.call('EXPIRE', key, life)
end

if op == 'acquire' then
  if state == 0 then return {1, 0, 0, '0', failures} end
  if state == 2 then
    local remaining = opened_at + timeout - now
    if remaining > 0 then return {0, 2, 0, num(remaining), failures} end
  elseif trial_until > now then
    if h[5] == token then return {1, 1, 1, '0', failures} end -- our own trial (a retried call): retry-safe
    return {0, 1, 0, '1', failures}
  end
  -- open past its timeout, or half-open whose trial vanished: this call is the one trial
  redis.call('HSET', key, 'state', 1, 'trial_until', num(now + lease), 'trial_token', token)
  keep()
  return {1, 1, 1, '0', failures}
end

local ok, trial = ARGV[6] == '1', ARGV[7] == '1'
if op == 'release' then
  if state == 1 and h[5] == token then
    redis.call('HDEL', key, 'trial_until', 'trial_token')
  end
  return {1, state, 0, '0', failures}
end

-- record
if trial then
  if state == 1 and h[5] == token then
    if ok then
      redis.call('HSET', key, 'state', 0, 'failures', 0)
      state, failures = 0, 0
    else
      failures = failures + 1 -- pybreaker counts the failed trial too
      redis.call('HSET', key, 'state', 2, 'opened_at', num(now), 'failures', failures)
      state = 2
    end
    redis.call('HDEL', key, 'trial_until', 'trial_token')
    keep()
  end
  return {1, state, 0, '0', failures}
end
if state ~= 0 then return {1, state, 0, '0', failures} end -- a late result from before the circuit opened
if ok then
  if failures > 0 then
    redis.call('HSET', key, 'failures', 0)
    keep()
  end
  return {1, 0, 0, '0', 0}
end
failures = redis.call('HINCRBY', key, 'failures', 1)
if failures >= threshold then
  redis.call('HSET', key, 'state', 2, 'opened_at', num(now))
  state = 2
end
keep()
return {1, state, 0, '0', failures}
