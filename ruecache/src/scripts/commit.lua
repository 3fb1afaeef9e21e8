-- Commits fetched values over the caller's leases, and wakes the callers waiting for them.
-- Per id, KEYS (1): data key;
-- ARGV (5): the caller's lease (the bytes it put in the data key: 0xC1 'L' token deadline, or a
-- refresh lease 0xC1 'R' token deadline, which it put before a value), the sealed
-- value, the data TTL (ms) or "0" for no expiry, the id's wake-up channel, and "1" to publish
-- with SPUBLISH (a cluster's shard channel) or "0" with PUBLISH.
-- Returns, per id: 1 written, over the caller's lease;
--                  -1 not written: the lease is gone (an invalidation deleted it, or its key
--                     was evicted, or outlived its grace);
--                  0 not written: the data key holds something else (another caller's lease,
--                     taken over after our deadline, or a value written through or committed).
--
-- A waiter flags the lease (0xC1 'W' token, see flag.lua) before it waits, so a wake-up is
-- published only when someone listens for it. All data keys are read with one MGET (a key of
-- another type reads as missing): each call from Lua costs more than the command itself.
local state = redis.call('MGET', unpack(KEYS))
local out = {}
for i = 1, #KEYS do
  local a = 5 * (i - 1)
  local lease, current = ARGV[a + 1], state[i]
  local flagged = '\193W' .. string.sub(lease, 3)
  -- A refresh lease is followed by the value it refreshes: it is compared with the key's start.
  -- Its token is never drawn twice, so a start that matches is the caller's own lease.
  local refreshed = string.byte(lease, 2) == 82 and current
    and string.sub(current, 1, #lease) == lease
  if not current then
    out[i] = -1
  elseif current == lease or current == flagged or refreshed then
    if ARGV[a + 3] == '0' then
      redis.call('SET', KEYS[i], ARGV[a + 2])
    else
      redis.call('SET', KEYS[i], ARGV[a + 2], 'PX', ARGV[a + 3])
    end
    if current == flagged then
      -- Only a hint (waiters poll without it): a failure to publish does not fail the commit.
      redis.pcall(ARGV[a + 5] == '1' and 'SPUBLISH' or 'PUBLISH', ARGV[a + 4], KEYS[i])
    end
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
