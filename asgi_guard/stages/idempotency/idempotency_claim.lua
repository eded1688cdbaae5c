-- Claim an Idempotency-Key record, or report what holds it.
-- KEYS: 1 record hash (fields st, fp, tok, resp)
-- ARGV: 1 fingerprint, 2 owner token, 3 lock ttl ms
-- Returns {'new'} | {'mismatch'} | {'running'} | {'done', response}
local record = redis.call('HMGET', KEYS[1], 'st', 'fp', 'resp')
if not record[1] then
  redis.call('HSET', KEYS[1], 'st', 'running', 'fp', ARGV[1], 'tok', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'new'}
end
if record[2] ~= ARGV[1] then
  return {'mismatch'}
end
if record[1] == 'running' then
  return {'running'}
end
return {'done', record[3]}
