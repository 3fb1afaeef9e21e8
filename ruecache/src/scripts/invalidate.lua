-- Invalidates ids: deletes each one's data and replaces its version, so that any fill that read
-- the old version can no longer write. A fresh random version (not INCR) means a version key
-- lost to eviction can never make an old version match again.
-- Per id, KEYS (2): data key, version key;
-- ARGV (2): a fresh random version, the version TTL (ms).
-- Returns, per id: 1.
local n = #KEYS / 2
local data, out = {}, {}
for i = 1, n do
  data[i] = KEYS[2 * i - 1]
  redis.call('SET', KEYS[2 * i], ARGV[2 * i - 1], 'PX', ARGV[2 * i])
  out[i] = 1
end
-- One DEL for all: each call from Lua costs more than the command itself.
redis.call('DEL', unpack(data))
return out
