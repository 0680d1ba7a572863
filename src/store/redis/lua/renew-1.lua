--[[
  renew: extends leases that are still current (not expired by our clock).

  KEYS[1] B:m
  ARGV[1] B   ARGV[2] wake channel   ARGV[3] lease ms   ARGV[4..] tokens
  Returns { 1 | 0 per token }
]]
--@include "lib"
local now = now_ms()
local exp = fmt(now + tonumber(ARGV[3]))
local out = {}
for i = 4, #ARGV do
  local cur = redis.call('ZSCORE', LEASES, ARGV[i])
  if cur and tonumber(cur) > now then
    redis.call('ZADD', LEASES, exp, ARGV[i])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
