-- Invalidates ids: deletes each one's data key, whatever it holds. A value is gone, and so is a
-- lease: the fill that holds it can no longer commit (its compare-and-set finds the lease gone),
-- so a value it read before the invalidation is never written.
-- It also deletes the version key of the previous protocol (three keys per id), so that a
-- process still running that protocol during a rolling deploy refuses its commit too.
-- Per id, KEYS (2): data key, the previous protocol's version key;
-- ARGV (2): the id's wake-up channel, and "1" to publish with SPUBLISH or "0" with PUBLISH.
-- Returns, per id: 1.
--
-- Callers waiting for a deleted lease that was flagged (0xC1 'W', see flag.lua) are woken, so
-- that one of them fills the id at once.
local n = #KEYS / 2
local data, out = {}, {}
for i = 1, n do
  data[i] = KEYS[2 * i - 1]
  out[i] = 1
end
local state = redis.call('MGET', unpack(data))
-- One DEL for all: each call from Lua costs more than the command itself.
redis.call('DEL', unpack(KEYS))
for i = 1, n do
  local v = state[i]
  if v and string.sub(v, 1, 2) == '\193W' then
    redis.pcall(ARGV[2 * i] == '1' and 'SPUBLISH' or 'PUBLISH', ARGV[2 * i - 1], data[i])
  end
end
return out
