-- rate_limit.lua: every limit of one request, decided atomically in one round trip.
--
-- KEYS: one per limit, in order (sliding exact takes two: its log and its sequence counter);
--       all share one hash tag, hence one cluster slot.
-- ARGV: [1] now in seconds, or "" to use the server clock (TIME); [2] the request's cost (units, a
--       whole number >= 0; throttle and debounce ignore it); [3] garbage-collection slack (ms);
--       [4] number of limits; then per limit: code, a, b, c (see stages/rate_limit/reference.py,
--       whose arithmetic this mirrors step for step). A cost is taken all or nothing.
-- Phase 1 reads every state and decides; phase 2 writes only if all limits admit the request
-- (a debounce limit records every attempt). Commands per limit and admitted request, after the
-- shared TIME: fixed and sliding-approximate windows 2 (HMGET, HINCRBY; the window's first write
-- HSET + PEXPIRE instead), token bucket 3, sliding exact 6-7, throttle and debounce 2. Returns, per limit: allowed (1/0), remaining,
-- reset and retry_after (seconds, as %.17g strings so no precision is lost).

local now = script_now(ARGV[1])
local cost = tonumber(ARGV[2])
local slack = tonumber(ARGV[3])
local n = tonumber(ARGV[4])

local function num(x)
  return string.format('%.17g', x)
end

local function ttl_ms(seconds)
  return math.ceil(seconds * 1000) + slack
end

local decisions = {}
local writes = {}
local admitted = true
local k = 1

for i = 1, n do
  local base = 4 + (i - 1) * 4
  local code = ARGV[base + 1]
  local a = tonumber(ARGV[base + 2])
  local b = tonumber(ARGV[base + 3])
  local c = tonumber(ARGV[base + 4])
  local key = KEYS[k]
  k = k + 1
  local ok, remaining, reset, retry = 0, 0, 0, 0
  local write = nil
  local always = false

  if code == 'tb' then
    local st = redis.call('HMGET', key, 't', 'ts')
    local tokens, ts = tonumber(st[1]), tonumber(st[2])
    if tokens == nil or ts == nil then
      tokens, ts = a, now
    end
    local elapsed = now - ts
    if elapsed < 0 then elapsed = 0 end
    tokens = math.min(a, tokens + elapsed * b)
    if tokens >= cost then
      local left = tokens - cost
      remaining = math.floor(left)
      ok, reset = 1, (remaining + 1 - left) / b
      write = function() redis.call('HSET', key, 't', num(left), 'ts', num(now)); redis.call('PEXPIRE', key, ttl_ms(c)) end
    else
      remaining = math.floor(tokens)
      reset = (cost - tokens) / b
      retry = reset
    end

  elseif code == 'fw' then
    local idx = math.floor(now / b)
    local st = redis.call('HMGET', key, 'w', 'n')
    local count = 0
    local same = tonumber(st[1]) == idx
    if same then count = tonumber(st[2]) end
    reset = (idx + 1) * b - now
    if count + cost <= a then
      ok, remaining = 1, a - count - cost
      -- the window's first write set the expiry (its end + slack); a later one in it would set the same
      write = function()
        if same then
          redis.call('HINCRBY', key, 'n', cost)
        else
          redis.call('HSET', key, 'w', num(idx), 'n', count + cost)
          redis.call('PEXPIRE', key, ttl_ms(reset))
        end
      end
    else
      remaining = a - count
      retry = reset
    end

  elseif code == 'se' then
    local seq = KEYS[k]
    k = k + 1
    redis.call('ZREMRANGEBYSCORE', key, '-inf', num(now - b))
    local count = redis.call('ZCARD', key)
    local first = now
    if count > 0 then
      first = tonumber(redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2])
    end
    if count + cost <= a then
      ok, remaining = 1, a - count - cost
      if cost > 0 then
        reset = math.min(first, now) + b - now
      else
        reset = first + b - now
      end
      write = function()
        if cost > 0 then
          local last = redis.call('INCRBY', seq, cost)
          local args = {}
          for j = last - cost + 1, last do
            args[#args + 1] = num(now)
            args[#args + 1] = num(now) .. ':' .. j
          end
          redis.call('ZADD', key, unpack(args))
        end
        redis.call('PEXPIRE', key, ttl_ms(b))
        redis.call('PEXPIRE', seq, ttl_ms(b))
      end
    else
      local rank = count + cost - a - 1
      remaining = math.max(0, a - count)
      reset = first + b - now
      if rank < count then
        retry = tonumber(redis.call('ZRANGE', key, rank, rank, 'WITHSCORES')[2]) + b - now
      else
        retry = b
      end
    end

  elseif code == 'sa' then
    local idx = math.floor(now / b)
    local st = redis.call('HMGET', key, 'w', 'c', 'p')
    local w0, c0, p0 = tonumber(st[1]), tonumber(st[2]), tonumber(st[3])
    local current, previous = 0, 0
    if w0 ~= nil then
      if w0 == idx then
        current, previous = c0, p0
      elseif w0 == idx - 1 then
        previous = c0
      end
    end
    local frac = (now - idx * b) / b
    local estimate = previous * (1 - frac) + current
    reset = (idx + 1) * b - now
    local keep = (idx + 2) * b - now
    local room = a - cost
    if estimate <= room then
      ok, remaining = 1, math.floor(room - estimate)
      write = function()
        if w0 == idx then  -- the window's first write set w, p and the expiry (the same deadline)
          redis.call('HINCRBY', key, 'c', cost)
        else
          redis.call('HSET', key, 'w', num(idx), 'c', current + cost, 'p', previous)
          redis.call('PEXPIRE', key, ttl_ms(keep))
        end
      end
    else
      remaining = math.max(0, math.floor(a - estimate))
    end
    if ok == 1 then
    elseif room < 0 then
      retry = keep
    elseif current <= room then
      retry = idx * b + (1 - (room - current) / previous) * b - now
    else
      retry = (idx + 1) * b + (1 - room / current) * b - now
    end

  elseif code == 'th' or code == 'db' then
    local last = tonumber(redis.call('GET', key))
    always = code == 'db'
    reset = a
    if last == nil or now - last >= a then
      ok = 1
    elseif always then
      retry = a
    else
      reset = last + a - now
      retry = reset
    end
    if ok == 1 or always then
      write = function() redis.call('SET', key, num(now), 'PX', ttl_ms(a)) end
    end

  else
    return redis.error_reply('rate_limit.lua: unknown algorithm ' .. tostring(code))
  end

  if ok == 0 then admitted = false end
  decisions[#decisions + 1] = ok
  decisions[#decisions + 1] = remaining
  decisions[#decisions + 1] = num(reset)
  decisions[#decisions + 1] = num(retry)
  if write ~= nil then writes[#writes + 1] = { write, always } end
end

for _, w in ipairs(writes) do
  if admitted or w[2] then w[1]() end
end
return decisions
