-- Response-cache purge: drop the listed entries and every entry tagged with a listed tag, atomically.
-- KEYS: 1 order zset, 2 expiry zset (the namespace's hash tag: one slot)
-- ARGV: 1 entry key prefix, 2 tag key prefix, 3 number of members n, 4..3+n members, then tags;
--       ARGV[3] = -1: drop every entry of the namespace.
-- Returns how many entries were dropped.
local prefix, tag_prefix, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local members = {}
if n < 0 then
  members = redis.call('ZRANGE', KEYS[1], 0, -1)
else
  for i = 4, 3 + n do members[#members + 1] = ARGV[i] end
  for i = 4 + n, #ARGV do
    local tag = tag_prefix .. ARGV[i]
    for _, m in ipairs(redis.call('SMEMBERS', tag)) do members[#members + 1] = m end
    redis.call('DEL', tag)
  end
end
local count = 0
for _, m in ipairs(members) do
  count = count + redis.call('DEL', prefix .. m)
  redis.call('ZREM', KEYS[1], m)
  redis.call('ZREM', KEYS[2], m)
end
return count
