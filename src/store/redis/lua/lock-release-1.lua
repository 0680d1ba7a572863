--[[
  lock-release: compare-and-delete.
  KEYS[1] the lock key   ARGV[1] token
  Returns 1 when this token held it and it was deleted, else 0
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
