-- Prepended to every script by state/valkey.py: the one rule for the time a script decides with.
-- `script_now(arg)`: the server's clock (TIME, shared by every process) when `arg` is "" or absent;
-- else `arg`, seconds since the epoch, which only tests pass (ValkeyBackend(clock=...)).
-- TIME is read once per script run (scripts run sent together share it: see `fused` in valkey.py).
local server_now = nil
local function script_now(arg)
  if arg == nil or arg == '' then
    if server_now == nil then
      local t = redis.call('TIME')
      server_now = tonumber(t[1]) + tonumber(t[2]) / 1000000
    end
    return server_now
  end
  return tonumber(arg)
end
-- The server time this run has already read (TIME), or nil: lets a script skip a command that only
-- stands in for the time.
local function script_time_read()
  return server_now
end
