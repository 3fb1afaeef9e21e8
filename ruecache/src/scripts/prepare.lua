-- Prepares a miss for filling, in one round trip: re-reads the data, reads (or creates) the
-- version and tries to take the lock.
-- KEYS[1] data key, KEYS[2] version key, KEYS[3] lock key
-- ARGV[1] lock token, ARGV[2] lock TTL (ms), ARGV[3] version TTL (ms),
-- ARGV[4] a fresh random version, used if none exists,
-- ARGV[5] "1" to skip the data re-check (the data is there but could not be decoded),
-- ARGV[6] the token of a lock holder found dead (its liveness key is gone): its lock is taken
--         over if it still holds that token; "" for none
-- Returns {1, data} if the data is now cached in our format (first byte 0xC1),
--         {2, version} if the lock is ours (fetch, then commit with this version),
--         {3, version, holder} if another caller holds the lock (wait for it; holder is its
--         token, or "" if the lock key holds something else).
if ARGV[5] ~= '1' then
  local data = redis.call('GET', KEYS[1])
  if data and string.byte(data, 1) == 193 then
    return {1, data}
  end
end
local version = redis.call('GET', KEYS[2])
if version then
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
else
  -- A version must exist before the fetch: a commit never writes when the version is missing,
  -- so a version key lost to eviction or expiry can only refuse a write, never allow one.
  version = ARGV[4]
  redis.call('SET', KEYS[2], version, 'PX', ARGV[3])
end
-- pcall: a lock key of another type (written by hand) reads as "held by someone unknown".
local holder = redis.pcall('GET', KEYS[3])
if type(holder) ~= 'string' then
  holder = ''
end
if ARGV[6] ~= '' and holder == ARGV[6] then
  redis.call('DEL', KEYS[3])
end
if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {2, version}
end
return {3, version, holder}
