-- Takes the lease of ids whose data key holds something the cache cannot use: bytes that are not
-- in its format or that its codec cannot decode, or a key of another type (a list, a hash...).
-- `SET ... NX` cannot take those (the key exists), so the caller names what it saw and the lease
-- replaces it only if it is still there: a value or a lease written since is left alone.
-- Per id, KEYS (1): data key;
-- ARGV (3): the caller's lease (0xC1 'L' token deadline), its key's TTL (ms), and the SHA1 (hex) of the
-- bytes the caller saw, or "" for a key of another type.
-- Returns, per id: 1 taken (the lease is in place), or what the data key holds now if it is
-- not what the caller saw (a string the caller reads as it reads `SET ... NX GET`'s reply). A
-- key gone since is taken as well: `SET` over nothing is what `SET ... NX` would have done.
local out = {}
for i = 1, #KEYS do
  local k, a = KEYS[i], 3 * (i - 1)
  -- A key of another type answers an error table, a missing key false: both are taken.
  local v = redis.pcall('GET', k)
  if type(v) == 'string' and redis.sha1hex(v) ~= ARGV[a + 3] then
    out[i] = v
  else
    redis.call('SET', k, ARGV[a + 1], 'PX', ARGV[a + 2])
    out[i] = 1
  end
end
return out
