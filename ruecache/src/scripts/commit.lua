-- Commits one fetched value.
-- KEYS[1] data key, KEYS[2] version key, KEYS[3] lock key
-- ARGV[1] lock token, ARGV[2] version read before the fetch, ARGV[3] value,
-- ARGV[4] data TTL (ms), or "0" for no expiry
-- Returns 1 written, 0 not written: the lock is another caller's,
--         -1 not written: the version changed or is missing (invalidated during the fetch).
local lock = redis.call('GET', KEYS[3])
if lock and lock ~= ARGV[1] then
  return 0
end
if lock then
  redis.call('DEL', KEYS[3])
end
if redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return -1
end
if ARGV[4] == '0' then
  redis.call('SET', KEYS[1], ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
end
return 1
