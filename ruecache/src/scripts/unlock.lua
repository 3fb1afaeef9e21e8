-- Releases a lock if it is still ours, and wakes the callers waiting for it.
-- KEYS[1] lock key
-- ARGV[1] lock token, ARGV[2] the id's wake-up channel (in the lock's slot),
-- ARGV[3] "1" to publish with SPUBLISH (a cluster's shard channel), "0" with PUBLISH
-- Returns 1 released, 0 not ours (expired, or taken by another caller).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  -- Only a hint (waiters poll without it): a failure to publish does not fail the unlock.
  redis.pcall(ARGV[3] == '1' and 'SPUBLISH' or 'PUBLISH', ARGV[2], KEYS[1])
  return 1
end
return 0
