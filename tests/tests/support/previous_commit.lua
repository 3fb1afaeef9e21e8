-- The commit script of the previous protocol (three keys per id: data, version, lock), as
-- processes that still run it during a rolling deploy send it. Kept here for tests/upgrade.rs.
-- Commits fetched values, then wakes the callers waiting for their locks.
-- Per id, KEYS (3): data key, version key, lock key;
-- ARGV (6): lock token, the version read before the fetch, the value, the data TTL (ms) or "0"
-- for no expiry, the id's wake-up channel (in the lock's slot), and "1" to publish with
-- SPUBLISH (a cluster's shard channel) or "0" with PUBLISH.
-- Returns, per id: 1 written, 0 not written: the lock is another caller's,
--                  -1 not written: the version changed (invalidated during the fetch),
--                  -2 not written: the version is missing (evicted or expired during the fetch).
--
-- Each call from Lua costs more than the command itself, so the locks and versions of all ids
-- are read with one MGET (a key of another type reads as missing) and the released locks are
-- deleted with one DEL. The script runs atomically, so this is the same as one id at a time.
local n = #KEYS / 3
local probe = {}
for i = 1, n do
  probe[2 * i - 1] = KEYS[3 * i]
  probe[2 * i] = KEYS[3 * i - 1]
end
local state = redis.call('MGET', unpack(probe))
local out, released = {}, {}
for i = 1, n do
  local k, a = 3 * (i - 1), 6 * (i - 1)
  local lock, current = state[2 * i - 1], state[2 * i]
  if lock and lock ~= ARGV[a + 1] then
    out[i] = 0
  else
    if lock then
      released[#released + 1] = KEYS[k + 3]
    end
    out[i] = current and -1 or -2
    if current == ARGV[a + 2] then
      if ARGV[a + 4] == '0' then
        redis.call('SET', KEYS[k + 1], ARGV[a + 3])
      else
        redis.call('SET', KEYS[k + 1], ARGV[a + 3], 'PX', ARGV[a + 4])
      end
      out[i] = 1
    end
  end
end
if #released > 0 then
  redis.call('DEL', unpack(released))
end
for i = 1, n do
  if out[i] ~= 0 then
    -- The lock is free and the data may be there: wake the waiters. A wake-up is only a hint
    -- (they poll without it), so a server or user that cannot publish does not fail the commit.
    local a = 6 * (i - 1)
    redis.pcall(ARGV[a + 6] == '1' and 'SPUBLISH' or 'PUBLISH', ARGV[a + 5], KEYS[3 * i])
  end
end
return out
