--[[
  lock-extend: compare-and-extend.
  KEYS[1] the lock key   ARGV[1] token   ARGV[2] ttl ms
  Returns 1 when this token holds it (its ttl is now ARGV[2]), else 0
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
