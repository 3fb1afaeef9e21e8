-- Commits fetched values, then wakes the callers waiting for their locks.
-- Per id, KEYS (3): data key, version key, lock key;
-- ARGV (6): lock token, the version read before the fetch, the value, the data TTL (ms) or "0"
-- for no expiry, the id's wake-up channel (in the lock's slot), and "1" to publish with
-- SPUBLISH (a cluster's shard channel) or "0" with PUBLISH.
-- Returns, per id: 1 written, 0 not written: the lock is another caller's,
--                  -1 not written: the version changed or is missing (invalidated during the
--                  fetch).
local function commit(data_key, version_key, lock_key, token, version, value, ttl, channel,
                      sharded)
  -- One call for both (a key of another type reads as missing): each call from Lua costs more
  -- than the command itself.
  local state = redis.call('MGET', lock_key, version_key)
  local lock, current = state[1], state[2]
  if lock and lock ~= token then
    return 0
  end
  if lock then
    redis.call('DEL', lock_key)
  end
  local written = -1
  if current == version then
    if ttl == '0' then
      redis.call('SET', data_key, value)
    else
      redis.call('SET', data_key, value, 'PX', ttl)
    end
    written = 1
  end
  -- The lock is free and the data may be there: wake the waiters. A wake-up is only a hint
  -- (they poll without it), so a server or user that cannot publish does not fail the commit.
  redis.pcall(sharded == '1' and 'SPUBLISH' or 'PUBLISH', channel, lock_key)
  return written
end

local out = {}
for i = 1, #KEYS / 3 do
  local k, a = 3 * (i - 1), 6 * (i - 1)
  out[i] = commit(KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3],
                  ARGV[a + 4], ARGV[a + 5], ARGV[a + 6])
end
return out
