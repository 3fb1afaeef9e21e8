-- Takes the refresh lease of timed values: puts the caller's refresh lease (0xC1 'R' token
-- deadline) before the value, which readers keep being served, and keeps the key's TTL. Only if
-- the key still starts with what the caller saw: the header of the timed value (0xC1 'T' expiry
-- fill-time) or of a refresh lease (another caller's, past its deadline, or the caller's own, to
-- move its deadline after a failed fetch). A value committed since, another live refresh lease,
-- a fill's lease, an invalidation: each is left alone.
-- Per id, KEYS (1): data key;
-- ARGV (2): the caller's refresh lease (42 bytes), the bytes the caller saw at the key's start.
-- Returns, per id: 1 taken; otherwise what the key holds now (the caller reads it as it reads a
-- GET), or 0 for nothing (or a key of another type).
local out = {}
for i = 1, #KEYS do
  local k, a = KEYS[i], 2 * (i - 1)
  local seen = ARGV[a + 2]
  -- A key of another type answers an error table, a missing key false.
  local v = redis.pcall('GET', k)
  if type(v) ~= 'string' then
    out[i] = 0
  elseif #seen > 0 and string.sub(v, 1, #seen) == seen then
    local value = v
    if string.byte(v, 2) == 82 then
      -- Another refresh lease ('R'): the value follows its 42 bytes.
      value = string.sub(v, 43)
    end
    redis.call('SET', k, ARGV[a + 1] .. value, 'KEEPTTL')
    out[i] = 1
  else
    out[i] = v
  end
end
return out
