-- Claim an Idempotency-Key record, or report what holds it.
-- KEYS: 1 record hash (fields st, fp, tok, resp, exp: the time the record ends)
-- ARGV: 1 fingerprint, 2 owner token, 3 lock ttl (s), 4 now (s) or "" for the server clock (TIME),
--       5 garbage-collection slack (ms) kept past exp
-- Returns {'new'} | {'mismatch'} | {'running'} | {'done', response}
-- A re-run with the same owner token (a retry after a lost reply) is 'new' again: retry-safe.
local now = script_now(ARGV[4])
local record = redis.call('HMGET', KEYS[1], 'st', 'fp', 'resp', 'exp', 'tok')
if not record[1] or tonumber(record[4] or '0') <= now then
  local ttl = tonumber(ARGV[3])
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'st', 'running', 'fp', ARGV[1], 'tok', ARGV[2], 'exp', string.format('%.17g', now + ttl))
  redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 1000) + tonumber(ARGV[5]))
  return {'new'}
end
if record[2] ~= ARGV[1] then
  return {'mismatch'}
end
if record[1] == 'running' then
  if record[5] == ARGV[2] then -- our own claim again (a retry after a lost reply): retry-safe
    return {'new'}
  end
  return {'running'}
end
return {'done', record[3]}
