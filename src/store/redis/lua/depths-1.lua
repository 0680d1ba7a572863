--[[
  depths: queue depths of every task of one partition, by our clock.

  KEYS[1] B:m
  ARGV[1] B   ARGV[2] wake channel
  Returns { task, due, scheduled, running, task, due, ... }
]]
--@include "lib"
local now = fmt(now_ms())
local out = {}
for _, task in ipairs(redis.call('SMEMBERS', TASKS)) do
  local due = redis.call('ZCOUNT', dkey(task), '-inf', now) + redis.call('ZCOUNT', xkey(task), '-inf', now)
  local later = redis.call('ZCOUNT', dkey(task), '(' .. now, '+inf') + redis.call('ZCOUNT', xkey(task), '(' .. now, '+inf')
  out[#out + 1] = task
  out[#out + 1] = due
  out[#out + 1] = later
  out[#out + 1] = num(redis.call('HGET', RUNNING, task)) or 0
end
return out
