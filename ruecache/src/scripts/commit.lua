-- Commits one fetched value, then wakes the callers waiting for its lock.
-- KEYS[1] data key, KEYS[2] version key, KEYS[3] lock key
-- ARGV[1] lock token, ARGV[2] version read before the fetch, ARGV[3] value,
-- ARGV[4] data TTL (ms), or "0" for no expiry,
-- ARGV[5] the id's wake-up channel (in the lock's slot), ARGV[6] "1" to publish with SPUBLISH
-- (a cluster's shard channel), "0" with PUBLISH
-- Returns 1 written, 0 not written: the lock is another caller's,
--         -1 not written: the version changed or is missing (invalidated during the fetch).
local lock = redis.call('GET', KEYS[3])
if lock and lock ~= ARGV[1] then
  return 0
end
if lock then
  redis.call('DEL', KEYS[3])
end
local written = -1
if redis.call('GET', KEYS[2]) == ARGV[2] then
  if ARGV[4] == '0' then
    redis.call('SET', KEYS[1], ARGV[3])
  else
    redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
  end
  written = 1
end
-- The lock is free and the data may be there: wake the waiters. A wake-up is only a hint (they
-- poll without it), so a server or user that cannot publish does not fail the commit.
redis.pcall(ARGV[6] == '1' and 'SPUBLISH' or 'PUBLISH', ARGV[5], KEYS[3])
return written
