-- Invalidates ids: deletes each one's data and replaces its version, so that any fill that read
-- the old version can no longer write. A fresh random version (not INCR) means a version key
-- lost to eviction can never make an old version match again.
-- Per id, KEYS (2): data key, version key;
-- ARGV (2): a fresh random version, the version TTL (ms).
-- Returns, per id: 1.
local out = {}
for i = 1, #KEYS / 2 do
  local k = 2 * (i - 1)
  redis.call('DEL', KEYS[k + 1])
  redis.call('SET', KEYS[k + 2], ARGV[k + 1], 'PX', ARGV[k + 2])
  out[i] = 1
end
return out
