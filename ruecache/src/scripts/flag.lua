-- Flags leases as waited for, so that their release publishes a wake-up (see commit.lua,
-- unlock.lua, invalidate.lua). A waiter subscribes to the id's channel first, then flags: a
-- release before the flag is seen by this script's reply, one after it publishes.
-- Per id, KEYS (1): data key;
-- ARGV (1): the lease the caller saw (0xC1 'L' or 'W', then the holder's token and deadline).
-- Returns, per id: 1 the same lease is still there, now flagged; 0 the data key changed (the
-- lease was released, taken over, invalidated or expired): the caller looks again at once.
local out = {}
for i = 1, #KEYS do
  -- A key of another type answers an error table, not a string.
  local v = redis.pcall('GET', KEYS[i])
  local head = type(v) == 'string' and string.sub(v, 1, 2)
  out[i] = 0
  if (head == '\193L' or head == '\193W') and string.sub(v, 3) == string.sub(ARGV[i], 3) then
    if head == '\193L' then
      redis.call('SET', KEYS[i], '\193W' .. string.sub(v, 3), 'KEEPTTL')
    end
    out[i] = 1
  end
end
return out
