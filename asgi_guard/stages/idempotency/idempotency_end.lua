-- End a claim, by its owner only: 'finish' stores the response for replay, 'release' frees the key.
-- KEYS: 1 record hash (fields st, fp, tok, resp, exp)
-- ARGV: 1 'finish' | 'release', 2 owner token, 3 response, 4 ttl (s),
--       5 now (s) or "" for the server clock (TIME), 6 garbage-collection slack (ms)
-- Returns 1 when this owner's running claim was ended, else 0 (not its claim, or the claim expired).
local now = script_now(ARGV[5])
local record = redis.call('HMGET', KEYS[1], 'st', 'tok', 'exp')
if record[1] ~= 'running' or record[2] ~= ARGV[2] or tonumber(record[3] or '0') <= now then
  return 0
end
if ARGV[1] == 'finish' then
  local ttl = tonumber(ARGV[4])
  redis.call('HSET', KEYS[1], 'st', 'done', 'resp', ARGV[3], 'exp', string.format('%.17g', now + ttl))
  redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 1000) + tonumber(ARGV[6]))
else
  redis.call('DEL', KEYS[1])
end
return 1
