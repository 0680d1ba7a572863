--[[
  lib: shared by every schedkit script (inlined where a script says `--@include "lib"`).

  Every script gets ARGV[1] = B, the partition's key base "<prefix>:{<prefix>:<p>}" (the
  braces are the partition's hash tag, so all keys below share one Redis Cluster slot),
  and ARGV[2] = the wake-up pub/sub channel. KEYS[1] is always B:m (it routes the call).

  Keys of one partition:
    B:m          HASH   partition counters: gen (schedule incarnations), seq (occurrences)
    B:T          SET    names of the tasks that have had schedules here
    B:r          HASH   task -> runs holding a lease (current incarnations only)
    B:s:<enc>    HASH   one schedule; enc = "<UTF-8 bytes of task>:<task><uid>"; absent for a
                        plain one-shot not claimed yet (see materialize)
    B:h:<enc>    LIST   its run history, newest last, capped at HISTORY_LIMIT
    B:w:<enc>    LIST   occurrences held back by the overlap policy: "<at>|<occurrence>"
    B:d:<task>   ZSET   enc -> due time of the schedule's scheduled occurrence (enabled only)
    B:x:<task>   ZSET   occurrence -> when it may run (trigger, retry, catchup, buffered)
    B:L          ZSET   lease group -> expiry
    B:g          HASH   lease group -> runs of the group still holding their lease;
                        "<group>#" -> how many tokens the group was given (<group>.1 ... .n);
                        "<group>/" -> "<maxAttempts>|<startedAt>" and "<group>@" -> its encs
                        (separated by RS, \30) when the group has plain one-shots running
                        without a hash (see lift; the list only for the reaper)
    B:l          HASH   lease token -> "<gen>|<dueAt>|<attempt>|<kind>|<maxAttempts>|<startedAt>|<enc>";
                        gen '' = the token itself (a plain one-shot lifted out of B:o keeps its
                        lease token as its incarnation: unique, and no counter)
    B:o          HASH   enc -> "<lease token>|<dueAt>" of a plain one-shot running without a
                        hash: its whole lease (no B:l entry; see lift)
  B:l and B:o also hold the field "~" (see hashtable) while they hold anything else.
  Leases are granted, renewed and expire by group: the runs of one task claimed in one claim
  call share one group "<partition>.<nonce>.<salt>.<i>" and one expiry (they were granted
  together, with the same lease length, to one executor, which renews them together). A
  token is "<group>.<n>"; it holds its lease while it is in B:l (or names it in B:o) and its
  group's expiry in B:L is in the future. One sorted-set entry per claim call instead of one
  per run. Clients hand tokens back as "<token>/<enc>" (renew, complete): tokens never hold
  '/', and the enc finds a B:o entry without a lookup by token.
    B:k:<key>    STRING a lock (SET NX PX)
  occurrence = "<seq, 12 digits>|<gen>|<dueAt>|<attempt>|<kind>|<enc>" (seq first: FIFO among equal times)

  Schedule hash fields: g gen · k kind (absent = once, 'e' every, 'c' cron) · ev every · an
  anchor · cr cron · tz · nx cron: the next due times after d, comma-separated, ascending ·
  ne '1' when the cron spec has no times after nx · nv version of nx (compare-and-set of
  refills) · p params JSON (absent = undefined) · en '0' when disabled (absent = enabled) · d due ('' = none) · t timeout (absent = 0)
  · cl '1' when a one-shot's occurrence was claimed · ru running · pe pending extra
  occurrences (queued + held back) · tk lease tokens of running runs, space-separated.
  Report: lx lastExecutedAt · lf lastFinishedAt · lr lastResult JSON · le lastError · ld
  lastDurationMs · at attempts · ok successes · ko failures · sk skips.

  Times are epoch ms of this server's clock (TIME); callers' clocks are never trusted.
]]
local B = ARGV[1]
local CHANNEL = ARGV[2]
local META = B .. ':m'
local TASKS = B .. ':T'
local RUNNING = B .. ':r'
local LEASES = B .. ':L'
local LEASE_INFO = B .. ':l'
local GROUPS = B .. ':g'
local PLAIN_RUNS = B .. ':o'
local HISTORY_LIMIT = {{HISTORY_LIMIT}}
local MAX_CATCHUP = {{MAX_CATCHUP}}

-- B:l and B:o are read and written a batch at a time (HMGET, HSET, HDEL of up to a claim's
-- runs). Small hashes are listpacks (up to hash-max-listpack-entries fields, 128 by default),
-- where every field looked up or written scans the list: in a 50,000-run drain that was ~15%
-- of Redis's time. A value longer than hash-max-listpack-value (64 by default) makes Redis
-- keep the key as a hash table: `hashtable` adds one in field "~" (no enc or token starts
-- so) before the key's first entries, `tidy` deletes the key when "~" is all it has left.
local HT_FIELD = '~'
local HT_VALUE = string.rep('~', 80)
local function hashtable(key)
  redis.call('HSETNX', key, HT_FIELD, HT_VALUE)
end
local function tidy(key)
  if redis.call('HLEN', key) == 1 and redis.call('HGET', key, HT_FIELD) then redis.call('DEL', key) end
end

local function skey(enc) return B .. ':s:' .. enc end
local function hkey(enc) return B .. ':h:' .. enc end
local function wkey(enc) return B .. ':w:' .. enc end
local function dkey(task) return B .. ':d:' .. task end
local function xkey(task) return B .. ':x:' .. task end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Numbers as exact decimal strings (Lua's tostring would write 1.7e+12).
local function fmt(n)
  if n == nil then return '' end
  if n == math.floor(n) and n > -1e15 and n < 1e15 then return string.format('%d', n) end
  return string.format('%.17g', n)
end

local function num(s)
  if s == nil or s == false or s == '' then return nil end
  return tonumber(s)
end

local function task_of(enc)
  local n, rest = string.match(enc, '^(%d+):(.*)$')
  return string.sub(rest, 1, tonumber(n))
end

local wake_at = nil
local function wake(at)
  if wake_at == nil or at < wake_at then wake_at = at end
end
local function flush_wake()
  if wake_at ~= nil then redis.call('PUBLISH', CHANNEL, fmt(wake_at)) end
  wake_at = nil
end

local function split_times(s)
  local out = {}
  if s == nil or s == false or s == '' then return out end
  for v in string.gmatch(s, '[^,]+') do out[#out + 1] = tonumber(v) end
  return out
end

local function join_times(arr, from)
  local parts = {}
  for i = from, #arr do parts[#parts + 1] = fmt(arr[i]) end
  return table.concat(parts, ',')
end

-- The lease group of a token "<group>.<n>".
local function group_of(token)
  return string.match(token, '^(.*)%.%d+$')
end

-- `k` runs of `group` gave their lease back (completed, cancelled or reaped); the group's
-- entries go with its last one.
local function release_group(group, k)
  if redis.call('HINCRBY', GROUPS, group, -k) <= 0 then
    redis.call('HDEL', GROUPS, group, group .. '#', group .. '/', group .. '@')
    redis.call('ZREM', LEASES, group)
  end
end

-- The lease info `v` of `token` (B:l).
local function parse_lease(v, token)
  local g, d, a, k, m, s, enc = string.match(v, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
  if g == '' then g = token end
  return { gen = g, dueAt = tonumber(d), attempt = tonumber(a), kind = k, max = tonumber(m), startedAt = tonumber(s), enc = enc }
end

local function parse_occ(v)
  local _, g, d, a, k, enc = string.match(v, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
  return { gen = g, dueAt = tonumber(d), attempt = tonumber(a), kind = k, enc = enc }
end

local function occurrence(enc, gen, dueAt, attempt, kind)
  local seq = redis.call('HINCRBY', META, 'seq', 1)
  return string.format('%012d', seq) .. '|' .. gen .. '|' .. fmt(dueAt) .. '|' .. fmt(attempt) .. '|' .. kind .. '|' .. enc
end

-- One run (or skip) into the schedule's capped history.
local function history(enc, dueAt, attempt, kind, outcome, startedAt, finishedAt, duration, err)
  local rec = fmt(dueAt) .. '|' .. fmt(attempt) .. '|' .. kind .. '|' .. outcome .. '|' .. fmt(startedAt) .. '|' .. fmt(finishedAt) .. '|' .. fmt(duration) .. '|' .. (err == nil and '' or ('!' .. err))
  local key = hkey(enc)
  redis.call('RPUSH', key, rec)
  redis.call('LTRIM', key, -HISTORY_LIMIT, -1)
end

-- Queues an extra occurrence (trigger, retry, catchup, abandon) of the schedule.
local function push_extra(enc, gen, dueAt, at, attempt, kind)
  redis.call('ZADD', xkey(task_of(enc)), fmt(at), occurrence(enc, gen, dueAt, attempt, kind))
  redis.call('HINCRBY', skey(enc), 'pe', 1)
  wake(at)
end

-- Holds an occurrence back until the schedule's running runs settle (overlap policy).
local function hold(enc, at, member)
  redis.call('RPUSH', wkey(enc), fmt(at) .. '|' .. member)
end

-- The space-separated token list `tk` without `token` (nil when empty).
local function without_token(tk, token)
  if not tk then return nil end
  local keep = {}
  for t in string.gmatch(tk, '%S+') do
    if t ~= token then keep[#keep + 1] = t end
  end
  if #keep == 0 then return nil end
  return table.concat(keep, ' ')
end

-- Writes `ru` and `tk` (HDEL when there is no token left).
local function set_running(h, ru, tk)
  if tk then
    redis.call('HSET', h, 'ru', ru, 'tk', tk)
  else
    redis.call('HSET', h, 'ru', ru)
    redis.call('HDEL', h, 'tk')
  end
end

-- Changes of the per-task running counts (B:r), written once at the end of a script.
local running_delta = {}
local function run_delta(task, n)
  running_delta[task] = (running_delta[task] or 0) + n
end
local function flush_running()
  for task, n in pairs(running_delta) do
    if n ~= 0 then redis.call('HINCRBY', RUNNING, task, n) end
  end
  running_delta = {}
end

-- Removes the extra occurrences of a schedule from its task's queue (they are few).
local function drop_extras(enc)
  local xk = xkey(task_of(enc))
  local members = redis.call('ZRANGE', xk, 0, -1)
  local suffix = '|' .. enc
  for _, m in ipairs(members) do
    if string.sub(m, -#suffix) == suffix and parse_occ(m).enc == enc then redis.call('ZREM', xk, m) end
  end
end

-- A plain one-shot claimed from its due-set member runs without a hash and without lease
-- info: its B:o entry "<token>|<dueAt>" is its lease, its group's "<group>/" entry in B:g
-- holds the rest (attempts, start: a few bytes, whatever the group's size, as lift runs once
-- per run of a group that is reaped or given back), and its completion just deletes the B:o entry. Anything
-- else that needs its hash (an update, a trigger, a replace or remove while it runs, a retry,
-- an abandon, an expired lease) lifts it first: writes the hash it would have had (running,
-- claimed, its token for a gen), moves its lease into B:l like any other run's and drops the
-- B:o entry. `token`: lift only if that is its token; `v`: its B:o value when the caller has
-- read it. Returns its lease info (as in B:l) and token, or nil when `enc` is not running so.
local function lift(enc, token, v)
  v = v or redis.call('HGET', PLAIN_RUNS, enc)
  if not v then return nil end
  local t, due = string.match(v, '^([^|]*)|(.*)$')
  if t == nil or (token ~= nil and t ~= token) then return nil end
  local g = group_of(t)
  local meta = g and redis.call('HGET', GROUPS, g .. '/')
  local max, started = string.match(meta or '', '^([^|]*)|(.*)$')
  max, started = max or '1', started or due
  redis.call('HDEL', PLAIN_RUNS, enc)
  tidy(PLAIN_RUNS)
  local info = '|' .. due .. '|1|scheduled|' .. max .. '|' .. started .. '|' .. enc
  hashtable(LEASE_INFO)
  redis.call('HSET', LEASE_INFO, t, info)
  redis.call('HSET', skey(enc), 'g', t, 'd', due, 'ru', '1', 'tk', t, 'lx', started, 'at', '1', 'cl', '1')
  return info, t
end

-- Whether B:o value `v` names lease token `token` ("<token>|<dueAt>"), without a new string.
local function names_token(v, token)
  return v ~= nil and v ~= false and string.byte(v, #token + 1) == 124 and string.find(v, token, 1, true) == 1
end

-- A plain one-shot (a due time only: no params, enabled, no delay to report, never claimed)
-- is stored as its member of B:d:<task> and nothing else: no hash until a script needs one.
-- This makes it (gen = a new incarnation, d = its due time) and returns its gen (a running
-- one is lifted); nil when the schedule exists in none of these forms.
local function materialize(enc)
  local h = skey(enc)
  local g = redis.call('HGET', h, 'g')
  if g then return g end
  local lifted, token = lift(enc)
  if lifted then return token end
  local due = redis.call('ZSCORE', dkey(task_of(enc)), enc)
  if not due then return nil end
  g = fmt(redis.call('HINCRBY', META, 'gen', 1))
  redis.call('HSET', h, 'g', g, 'd', due)
  return g
end

local function delete_schedule(enc)
  redis.call('DEL', skey(enc), hkey(enc), wkey(enc))
end

-- After a run ends: release held-back occurrences; drop a one-shot (or an ended recurring
-- schedule) that has nothing left.
local function settled(enc, now)
  local h = skey(enc)
  local f = redis.call('HMGET', h, 'ru', 'pe', 'k', 'cl', 'd')
  if (num(f[1]) or 0) > 0 then return end
  local w = wkey(enc)
  local waiting = redis.call('LRANGE', w, 0, -1)
  if #waiting > 0 then
    redis.call('DEL', w)
    local xk = xkey(task_of(enc))
    for _, e in ipairs(waiting) do
      local at, member = string.match(e, '^([^|]*)|(.*)$')
      redis.call('ZADD', xk, fmt(math.min(tonumber(at), now)), member)
    end
    wake(now)
    return
  end
  if (num(f[2]) or 0) > 0 then return end
  if redis.call('ZSCORE', dkey(task_of(enc)), enc) then return end
  local finished
  if not f[3] then finished = (f[4] == '1') else finished = (f[5] == '' or not f[5]) end
  if finished then delete_schedule(enc) end
end
