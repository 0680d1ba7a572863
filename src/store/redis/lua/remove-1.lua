--[[
  remove: deletes one schedule and its pending occurrences; its running runs finish but
  change nothing (their incarnation is gone).

  KEYS[1] B:m
  ARGV[1] B   ARGV[2] wake channel   ARGV[3] enc
  Returns 1 when it existed, else 0
]]
--@include "lib"
local enc = ARGV[3]
local h = skey(enc)
local f = redis.call('HMGET', h, 'g', 'ru', 'pe')
-- Running without a hash (lib: lift): removed like any running schedule.
if not f[1] and lift(enc) then f = redis.call('HMGET', h, 'g', 'ru', 'pe') end
local task = task_of(enc)
-- A plain one-shot without a hash (lib: materialize) is its due-set member only.
if not f[1] then return redis.call('ZREM', dkey(task), enc) end
redis.call('ZREM', dkey(task), enc)
if (num(f[3]) or 0) > 0 then drop_extras(enc) end
local ru = num(f[2]) or 0
if ru > 0 then run_delta(task, -ru) end
flush_running()
delete_schedule(enc)
return 1
