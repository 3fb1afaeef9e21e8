-- Releases leases that are still the caller's, and wakes the callers waiting for them.
-- Per id, KEYS (1): data key;
-- ARGV (3): the lease (0xC1 'L' token deadline), the id's wake-up channel, and "1" to publish with
-- SPUBLISH (a cluster's shard channel) or "0" with PUBLISH.
-- Returns, per id: 1 released, 0 not the caller's (expired, invalidated, taken by another
-- caller, filled, or a key of another type, which MGET reads as missing).
local held = redis.call('MGET', unpack(KEYS))
local out = {}
for i = 1, #KEYS do
  local a = 3 * (i - 1)
  local lease = ARGV[a + 1]
  local flagged = '\193W' .. string.sub(lease, 3)
  out[i] = 0
  if held[i] == lease or held[i] == flagged then
    redis.call('DEL', KEYS[i])
    if held[i] == flagged then
      -- Only a hint (waiters poll without it): a failure to publish does not fail the unlock.
      redis.pcall(ARGV[a + 3] == '1' and 'SPUBLISH' or 'PUBLISH', ARGV[a + 2], KEYS[i])
    end
    out[i] = 1
  end
end
return out
