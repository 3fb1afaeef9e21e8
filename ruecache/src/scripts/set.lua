-- Writes values through (after a write to the source), over whatever the data keys hold: a value,
-- nothing, or the lease of a fill in progress, whose commit then finds the value instead of its
-- lease and writes nothing. So a fill that read the source before the write can never replace
-- the value written here.
-- Like an invalidation, it also deletes the previous protocol's version key, so that processes
-- still running that protocol refuse their commits.
-- Per id, KEYS (2): data key, the previous protocol's version key;
-- ARGV (4): the sealed value, the data TTL (ms) or "0" for no expiry, the id's wake-up channel,
-- and "1" to publish with SPUBLISH or "0" with PUBLISH.
-- Returns, per id: 1.
--
-- Callers waiting for a replaced lease that was flagged (0xC1 'W', see flag.lua) are woken: the
-- value is there for them to read.
local n = #KEYS / 2
local data, versions, out = {}, {}, {}
for i = 1, n do
  data[i] = KEYS[2 * i - 1]
  versions[i] = KEYS[2 * i]
  out[i] = 1
end
local state = redis.call('MGET', unpack(data))
for i = 1, n do
  local a = 4 * (i - 1)
  if ARGV[a + 2] == '0' then
    redis.call('SET', data[i], ARGV[a + 1])
  else
    redis.call('SET', data[i], ARGV[a + 1], 'PX', ARGV[a + 2])
  end
end
-- One DEL for all: each call from Lua costs more than the command itself.
redis.call('DEL', unpack(versions))
for i = 1, n do
  local v = state[i]
  if v and string.sub(v, 1, 2) == '\193W' then
    redis.pcall(ARGV[4 * i] == '1' and 'SPUBLISH' or 'PUBLISH', ARGV[4 * i - 1], data[i])
  end
end
return out
