-- Releases locks that are still ours, and wakes the callers waiting for them.
-- Per id, KEYS (1): lock key;
-- ARGV (3): lock token, the id's wake-up channel (in the lock's slot), and "1" to publish with
-- SPUBLISH (a cluster's shard channel) or "0" with PUBLISH.
-- Returns, per id: 1 released, 0 not ours (expired, taken by another caller, or a key of another
-- type, which MGET reads as missing).
local held = redis.call('MGET', unpack(KEYS))
local out = {}
for i = 1, #KEYS do
  local a = 3 * (i - 1)
  out[i] = 0
  if held[i] == ARGV[a + 1] then
    redis.call('DEL', KEYS[i])
    -- Only a hint (waiters poll without it): a failure to publish does not fail the unlock.
    redis.pcall(ARGV[a + 3] == '1' and 'SPUBLISH' or 'PUBLISH', ARGV[a + 2], KEYS[i])
    out[i] = 1
  end
end
return out
