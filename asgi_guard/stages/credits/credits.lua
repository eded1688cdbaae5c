-- Credits ledger for one (credit type, user): every operation is one atomic call.
-- KEYS[1] balance (integer string), KEYS[2] pending reservations (hash rid -> amount),
-- KEYS[3] reservation deadlines (zset rid -> server time past which the reservation is refunded).
-- ARGV[1] op: reserve | commit | refund | grant | set | get
-- ARGV[2] amount (reserve, grant, set), ARGV[3] reservation id, ARGV[4] reservation ttl (seconds),
-- ARGV[5] now in seconds, or "" to use the server clock (TIME; tests pass their clock)
-- Reply: {code, balance}. reserve: 1 reserved, 0 short, 2 id already pending.
-- grant (a negative amount debits): 0 when it would go below zero.
-- commit/refund: 1 done, 0 nothing pending under that id (already settled or expired and refunded).
-- commit with ARGV[2] a number keeps at most that much of the reservation and refunds the rest
-- ("" keeps all of it): a commit never charges more than was reserved.
-- Every op first refunds expired reservations (bounded), so a reservation whose process died is
-- refunded by whoever touches this balance next: never lost, never settled twice.
local balance_key, pending_key, deadline_key = KEYS[1], KEYS[2], KEYS[3]
local op = ARGV[1]
local now = script_now(ARGV[5])

local expired = redis.call('ZRANGEBYSCORE', deadline_key, '-inf', string.format('%.17g', now), 'LIMIT', 0, 100)
if #expired > 0 then
  local back = 0
  for _, rid in ipairs(expired) do
    back = back + tonumber(redis.call('HGET', pending_key, rid) or '0')
    redis.call('HDEL', pending_key, rid)
  end
  redis.call('ZREM', deadline_key, unpack(expired))
  if back > 0 then redis.call('INCRBY', balance_key, back) end
end

local balance = tonumber(redis.call('GET', balance_key) or '0')

if op == 'reserve' then
  local amount, rid = tonumber(ARGV[2]), ARGV[3]
  -- HSETNX both checks for a pending id and records the reservation (undone when short)
  if redis.call('HSETNX', pending_key, rid, amount) == 0 then return {2, balance} end
  if balance < amount then
    redis.call('HDEL', pending_key, rid)
    return {0, balance}
  end
  balance = redis.call('DECRBY', balance_key, amount)
  redis.call('ZADD', deadline_key, string.format('%.17g', now + tonumber(ARGV[4])), rid)
  return {1, balance}
elseif op == 'commit' or op == 'refund' then
  local rid = ARGV[3]
  local amount = redis.call('HGET', pending_key, rid)
  if not amount then return {0, balance} end
  redis.call('HDEL', pending_key, rid)
  redis.call('ZREM', deadline_key, rid)
  local keep = tonumber(ARGV[2])
  if op == 'refund' then
    balance = redis.call('INCRBY', balance_key, tonumber(amount))
  elseif keep ~= nil and keep < tonumber(amount) then
    balance = redis.call('INCRBY', balance_key, tonumber(amount) - keep)
  end
  return {1, balance}
elseif op == 'grant' then
  local amount = tonumber(ARGV[2])
  if balance + amount < 0 then return {0, balance} end
  return {1, redis.call('INCRBY', balance_key, amount)}
elseif op == 'set' then
  redis.call('SET', balance_key, tonumber(ARGV[2]))
  return {1, tonumber(ARGV[2])}
elseif op == 'get' then
  return {1, balance}
end
return redis.error_reply('credits.lua: unknown op ' .. tostring(op))
