--[[
  update: patches one schedule in place (same incarnation: running runs stay valid).

  KEYS[1] B:m
  ARGV[1] B   ARGV[2] wake channel   ARGV[3] enc
  ARGV[4] '1' when params are patched   ARGV[5] params JSON ('' = undefined)
  ARGV[6] timeout ('' = unchanged)   ARGV[7] enabled ('' = unchanged, '1', '0')
  ARGV[8] '1' when the spec is patched, then ARGV[9..16]: kind, every, cron, tz, first mode,
    first value, cron list, cron ended (as in upsert)
  Returns nil when there is no such schedule, { '!' } when the cron list is behind our clock,
    else { now, HGETALL of the schedule, its history }
]]
--@include "lib"
--@include "spec"
local enc = ARGV[3]
local h = skey(enc)
if not materialize(enc) then return false end
local now = now_ms()
if ARGV[8] == '1' then
  local kind, every, cron, tz, mode, val, list, ended = ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13], ARGV[14], ARGV[15], ARGV[16]
  local due, behind = resolve_first(kind, mode, val, every, list, ended, now)
  if behind then return { '!' } end
  local nv = redis.call('HINCRBY', h, 'nv', 1)
  redis.call('HDEL', h, 'k', 'ev', 'an', 'cr', 'tz', 'nx', 'ne', 'cl')
  local fields = { 'd', fmt(due) }
  spec_fields(fields, kind, every, cron, tz, due, list, ended, now)
  redis.call('HSET', h, unpack(fields))
  if kind == 'c' then redis.call('HSET', h, 'nv', fmt(nv)) end
end
if ARGV[4] == '1' then
  if ARGV[5] == '' then redis.call('HDEL', h, 'p') else redis.call('HSET', h, 'p', ARGV[5]) end
end
-- Default values are not stored (absent t = 0, absent en = enabled).
if ARGV[6] == '0' then redis.call('HDEL', h, 't') elseif ARGV[6] ~= '' then redis.call('HSET', h, 't', ARGV[6]) end
if ARGV[7] == '1' then redis.call('HDEL', h, 'en') elseif ARGV[7] ~= '' then redis.call('HSET', h, 'en', ARGV[7]) end
local dk = dkey(task_of(enc))
redis.call('ZREM', dk, enc)
local f = redis.call('HMGET', h, 'en', 'd', 'k', 'cl')
local once_claimed = (not f[3]) and f[4] == '1'
if f[1] ~= '0' and f[2] and f[2] ~= '' and not once_claimed then
  redis.call('ZADD', dk, f[2], enc)
  wake(tonumber(f[2]))
end
flush_wake()
return { fmt(now), redis.call('HGETALL', h), redis.call('LRANGE', hkey(enc), 0, -1) }
