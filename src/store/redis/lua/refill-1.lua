--[[
  refill: replaces a cron schedule's list of precomputed due times (computed by croner in
  JS), compare-and-set on the incarnation and the list's version: a refill based on a list
  that a claim has since advanced is refused (the claimer that advanced it refills instead).

  KEYS[1] B:m
  ARGV[1] B   ARGV[2] wake channel   ARGV[3] enc   ARGV[4] gen   ARGV[5] nv (list version)
  ARGV[6] new list (ascending, all after the due time)   ARGV[7] ended ('1'|'0')
  Returns 1 when written, 0 when the schedule changed meanwhile
]]
--@include "lib"
local h = skey(ARGV[3])
local f = redis.call('HMGET', h, 'g', 'nv', 'k')
if f[1] ~= ARGV[4] or (f[2] or '0') ~= ARGV[5] or f[3] ~= 'c' then return 0 end
redis.call('HSET', h, 'nx', ARGV[6], 'ne', ARGV[7])
redis.call('HINCRBY', h, 'nv', 1)
return 1
