-- Invalidates one id: deletes the data and replaces the version, so that any fill that read the
-- old version can no longer write. A fresh random version (not INCR) means a version key lost to
-- eviction can never make an old version match again.
-- KEYS[1] data key, KEYS[2] version key
-- ARGV[1] a fresh random version, ARGV[2] version TTL (ms)
-- Returns 1.
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
