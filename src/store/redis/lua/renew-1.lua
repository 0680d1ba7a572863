--[[
  renew: extends leases that are still current (not expired by our clock), by lease group.

  KEYS[1] B:m
  ARGV[1] B   ARGV[2] wake channel   ARGV[3] lease ms   ARGV[4..] tokens, each 'token/enc'
  Returns { 1 | 0 per token }
]]
--@include "lib"
local now = now_ms()
local exp = fmt(now + tonumber(ARGV[3]))
local out = {}
-- A token holds its lease while it is in B:l (or its B:o entry names it) and its group has not
-- expired (lib: lease groups).
local live = {}
for i = 4, #ARGV do
  local token, enc = string.match(ARGV[i], '^([^/]*)/(.*)$')
  local g = token and group_of(token)
  local ok = false
  if g ~= nil and (names_token(redis.call('HGET', PLAIN_RUNS, enc), token) or redis.call('HGET', LEASE_INFO, token)) then
    if live[g] == nil then
      local cur = redis.call('ZSCORE', LEASES, g)
      live[g] = cur ~= false and tonumber(cur) > now
      if live[g] then redis.call('ZADD', LEASES, exp, g) end
    end
    ok = live[g]
  end
  out[#out + 1] = ok and 1 or 0
end
return out
