-- End a claim, by its owner only: 'finish' stores the response for replay, 'release' frees the key.
-- KEYS: 1 record hash
-- ARGV: 1 'finish' | 'release', 2 owner token, 3 response, 4 ttl ms
-- Returns 1 when this owner's running claim was ended, else 0.
local record = redis.call('HMGET', KEYS[1], 'st', 'tok')
if record[1] ~= 'running' or record[2] ~= ARGV[2] then
  return 0
end
if ARGV[1] == 'finish' then
  redis.call('HSET', KEYS[1], 'st', 'done', 'resp', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
else
  redis.call('DEL', KEYS[1])
end
return 1
