-- Releases a lock if it is still ours.
-- KEYS[1] lock key
-- ARGV[1] lock token
-- Returns 1 released, 0 not ours (expired, or taken by another caller).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
