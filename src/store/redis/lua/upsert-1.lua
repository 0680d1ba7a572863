--[[
  upsert: creates or replaces schedules of one partition. A replaced schedule gets a new
  incarnation (gen): its queued extra occurrences and held-back ones are dropped and its
  running runs are fenced out (they finish but change nothing); its report and history stay.
  A plain one-shot (first: at, no params, enabled, timeout 0) that has no hash is written as
  its due-set member only (lib: materialize); everything else gets a hash.

  KEYS[1] B:m
  ARGV[1] B   ARGV[2] wake channel   ARGV[3] n
  then n groups of 12: enc, kind ('o'|'e'|'c'), every, cron, tz ('' = none),
    params JSON ('' = undefined), enabled ('1'|'0'), timeout, first mode ('at'|'in'|'next'),
    first value, cron list (comma-separated), cron ended ('1'|'0')
  Returns { now, { due per schedule: epoch ms, '' (never) or '!' (cron list behind our clock: retry) } }
]]
--@include "lib"
--@include "spec"
local now = now_ms()
local n = tonumber(ARGV[3])
local out = {}
local DEFINITION = { 'g', 'k', 'ev', 'an', 'cr', 'tz', 'nx', 'ne', 'nv', 'p', 'en', 'd', 't', 'cl', 'ru', 'pe', 'tk' }
local gen = redis.call('HINCRBY', META, 'gen', n) - n
local known = {}
for i = 0, n - 1 do
  local a = 3 + i * 12
  local enc, kind, every, cron, tz = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
  local params, enabled, timeout, mode, val = ARGV[a + 6], ARGV[a + 7], ARGV[a + 8], ARGV[a + 9], ARGV[a + 10]
  local list, ended = ARGV[a + 11], ARGV[a + 12]
  local due, behind = resolve_first(kind, mode, val, every, list, ended, now)
  gen = gen + 1
  if behind then
    out[#out + 1] = '!'
  else
    local h = skey(enc)
    local task = task_of(enc)
    local old = redis.call('HMGET', h, 'g', 'ru', 'pe')
    -- Running without a hash (lib: lift): replaced like any running schedule.
    if not old[1] and lift(enc) then old = redis.call('HMGET', h, 'g', 'ru', 'pe') end
    if not known[task] then
      redis.call('SADD', TASKS, task)
      known[task] = true
    end
    if not old[1] and kind == 'o' and params == '' and enabled == '1' and timeout == '0' and due ~= nil then
      -- A plain one-shot with no hash (none, or one of the same kind) stays a due-set member
      -- only; a schedule that has a hash (a report, running runs) keeps it, below.
      redis.call('ZADD', dkey(task), fmt(due), enc)
      wake(due)
      out[#out + 1] = fmt(due)
    else
      -- (A plain one-shot replaced by one that needs a hash: its member goes too.)
      redis.call('ZREM', dkey(task), enc)
      if old[1] then
        if (num(old[3]) or 0) > 0 then drop_extras(enc) end
        redis.call('DEL', wkey(enc))
        local ru = num(old[2]) or 0
        if ru > 0 then run_delta(task, -ru) end
        redis.call('HDEL', h, unpack(DEFINITION))
      end
      -- Default values are left out (absent t = 0, absent en = enabled): a small hash stays a
      -- smaller listpack.
      local fields = { 'g', fmt(gen), 'd', fmt(due) }
      if timeout ~= '0' then
        fields[#fields + 1] = 't'
        fields[#fields + 1] = timeout
      end
      if enabled ~= '1' then
        fields[#fields + 1] = 'en'
        fields[#fields + 1] = '0'
      end
      if params ~= '' then
        fields[#fields + 1] = 'p'
        fields[#fields + 1] = params
      end
      spec_fields(fields, kind, every, cron, tz, due, list, ended, now)
      redis.call('HSET', h, unpack(fields))
      if enabled == '1' and due ~= nil then
        redis.call('ZADD', dkey(task), fmt(due), enc)
        wake(due)
      end
      out[#out + 1] = fmt(due)
    end
  end
end
flush_running()
flush_wake()
return { fmt(now), out }
