--[[
  claim: in one partition, reaps expired leases (redelivering while attempts remain), then
  claims up to `limit` due occurrences of the listed tasks, each with a lease and a fencing
  token, applying the misfire and overlap policies; a recurring schedule is advanced to its
  next due time in this same step. Mirrors MemoryStore.claim.

  A cron schedule whose precomputed due times no longer reach our clock cannot be advanced
  here (Lua has no cron): it stays due, untouched, and is returned in `refill` with reason
  'cover'; the caller computes more times, writes them (refill-1.lua) and claims again. So a
  schedule can never stop because a process died between the two steps. A list running low
  is returned with reason 'low' after a normal claim.

  KEYS[1] B:m
  ARGV[1] B   ARGV[2] wake channel   ARGV[3] token nonce   ARGV[4] partition number
  ARGV[5] limit (all tasks)   ARGV[6] refill a cron list when fewer times than this remain
  ARGV[7] number of tasks, then per task 7 values: task, overlap, misfire, catchup window ms, attempts, lease ms, limit
  Returns {
    now,
    runs:    one string: runs separated by RS (\30), each 'token/enc US dueAt US extra' (US =
             \31; names, tokens and JSON never hold control characters, tokens never '/';
             'token/enc' is what renew and complete take back): extra is '' for a
             first attempt of a scheduled occurrence without params that supersedes nothing,
             else '<attempt>|<kind>|<superseded tokens, space-separated>|<params JSON>' (params
             last: JSON may hold '|'; '' = undefined). A run's lease expires at now + its
             task's lease ms (one group per task). One string, not 4 per run: each reply
             element costs Redis and the client about as much as the run's other work,
    skipped: { { enc, dueAt, reason } },
    lost:    { { token, enc, dueAt, attempt, kind, requeued '1'|'0' } },
    refill:  { { enc, gen, nv, due, nx, reason 'cover'|'low', cron, tz ('' = none) } },
    nextDue ('' = nothing pending),
    { due-now count per task, in ARGV order }
  }
]]
--@include "lib"
local now = now_ms()
local snow = fmt(now)
local nonce = ARGV[3]
local partition = ARGV[4]
local budget = tonumber(ARGV[5])
local LOW = tonumber(ARGV[6])
local ntasks = tonumber(ARGV[7])
local MAX_STEPS = 2000
local runs, skipped, lost, refill = {}, {}, {}, {}
-- Tokens are '<partition>.<nonce>.<salt>.<group>.<n>' (lib: lease groups). The salt makes
-- them unique per execution, not per call: a client resends a command whose reply was lost with its connection (ioredis does),
-- and a resent claim must not mint its first execution's tokens again: they would overwrite
-- those leases, whose occurrences would then never complete nor be redelivered.
local salt = nil

-- ------------------------------------------------------------------ leases
-- Expired groups, whole (a group's runs share one expiry), until REAP_MAX runs were reaped.
local REAP_MAX = 1000
local reaped = 0
-- Whether a lease was taken out of B:l here (tidy it at the end).
local shrunk = false
local expired = redis.call('ZRANGE', LEASES, '-inf', snow, 'BYSCORE', 'LIMIT', 0, 100)
for _, group in ipairs(expired) do
  if reaped >= REAP_MAX then break end
  local gf = redis.call('HMGET', GROUPS, group .. '#', group .. '@')
  local total = tonumber(gf[1]) or 0
  -- Its plain one-shots still running without a hash are lifted first (lib: lift): then every
  -- run of the group that still holds its lease has it in B:l.
  if gf[2] then
    for enc in string.gmatch(gf[2], '[^\30]+') do
      local v = redis.call('HGET', PLAIN_RUNS, enc)
      if v and group_of(string.match(v, '^([^|]*)|') or '') == group then lift(enc, nil, v) end
    end
  end
  redis.call('HDEL', GROUPS, group, group .. '#', group .. '/', group .. '@')
  redis.call('ZREM', LEASES, group)
  for n = 1, total do
    local token = group .. '.' .. n
    local v = redis.call('HGET', LEASE_INFO, token)
    if v then
      reaped = reaped + 1
      redis.call('HDEL', LEASE_INFO, token)
      shrunk = true
      local l = parse_lease(v, token)
      local h = skey(l.enc)
      local f = redis.call('HMGET', h, 'g', 'ru', 'tk')
      if f[1] == l.gen then
        set_running(h, (num(f[2]) or 1) - 1, without_token(f[3], token))
        run_delta(task_of(l.enc), -1)
        local err = 'lease expired: the executor stopped renewing it (crashed, stalled or lost its connection)'
        history(l.enc, l.dueAt, l.attempt, l.kind, 'lost', l.startedAt, now, nil, err)
        redis.call('HSET', h, 'le', err, 'lf', snow)
        local requeued = l.attempt < l.max
        if requeued then
          push_extra(l.enc, l.gen, l.dueAt, now, l.attempt + 1, 'retry')
        else
          redis.call('HINCRBY', h, 'ko', 1)
        end
        lost[#lost + 1] = { token, l.enc, fmt(l.dueAt), fmt(l.attempt), l.kind, requeued and '1' or '0' }
        settled(l.enc, now)
      end
    end
  end
end

-- ------------------------------------------------------------------ helpers

-- The state `lease` gets for a fresh plain one-shot, and "supersedes nothing" (shared: most runs).
local FRESH = { ru = 0, fresh = true }
-- Separators of the runs in the reply: record and unit separator.
local RS, US = '\30', '\31'
local NONE = {}
-- Token numbers 1..128 as string constants: a number concatenated to a string goes through
-- sprintf("%.14g"), ~3x the cost of this lookup (the table costs ~1 us per call).
local DIGITS = { {{DIGITS}} }

-- Leases granted by this call are written to B:l, B:L and B:g in bulk at the end
-- (flush_leases, before anything reads them); until then a run cancelled in this same call
-- (overlap cancel-previous) is taken out of these instead. One lease group per task.
local new_tokens, new_info = {}, {}
local groups, group_list = {}, {}
-- Plain one-shots leased without a hash (lib: lift): enc, "<token>|<dueAt>", ...
local new_plain = {}
local function flush_leases()
  if #new_plain > 0 then hashtable(PLAIN_RUNS) end
  if #new_tokens > 0 then hashtable(LEASE_INFO) end
  for from = 1, #new_plain, 1000 do
    redis.call('HSET', PLAIN_RUNS, unpack(new_plain, from, math.min(#new_plain, from + 999)))
  end
  local info = {}
  for _, token in ipairs(new_tokens) do
    if new_info[token] then
      info[#info + 1] = token
      info[#info + 1] = new_info[token]
      if #info >= 1000 then
        redis.call('HSET', LEASE_INFO, unpack(info))
        info = {}
      end
    end
  end
  if #info > 0 then redis.call('HSET', LEASE_INFO, unpack(info)) end
  for _, g in ipairs(group_list) do
    if g.live > 0 then
      redis.call('ZADD', LEASES, g.exp, g.id)
      if #g.plain > 0 then
        redis.call('HSET', GROUPS, g.id, g.live, g.id .. '#', g.n, g.id .. '/', g.max .. '|' .. snow, g.id .. '@', table.concat(g.plain, RS))
      else
        redis.call('HSET', GROUPS, g.id, g.live, g.id .. '#', g.n)
      end
    end
  end
  new_tokens, new_info, groups, group_list, new_plain = {}, {}, {}, {}, {}
end

-- One-shots taken off a task's due set, removed in one call per batch read (flush_done
-- runs before the set is read again).
local done_key, done_members = nil, {}
-- Whether done_members are the first #done_members members of done_key by rank (a batch the
-- fast path below took whole from the front of the set): one range removal then, not a
-- lookup per member.
local done_prefix = false
local function flush_done()
  if #done_members > 0 then
    if done_prefix then
      redis.call('ZREMRANGEBYRANK', done_key, 0, #done_members - 1)
    else
      for from = 1, #done_members, 1000 do
        redis.call('ZREM', done_key, unpack(done_members, from, math.min(#done_members, from + 999)))
      end
    end
  end
  done_key, done_members, done_prefix = nil, {}, false
end

-- The lease group of this call's runs of `task` (made on first use).
local function group_for(task, pol)
  if salt == nil then salt = fmt(redis.call('HINCRBY', META, 'seq', 1)) end
  local g = groups[task]
  if g == nil then
    g = { id = partition .. '.' .. nonce .. '.' .. salt .. '.' .. (#group_list + 1), n = 0, live = 0, exp = fmt(now + pol.lease), max = fmt(pol.attempts), plain = {} }
    groups[task] = g
    group_list[#group_list + 1] = g
  end
  return g
end

-- Leases an occurrence (appended to `runs`; returns true). `s` is the schedule's state read by the caller: ru, tk, p (and
-- claimed = true for a one-shot's scheduled occurrence; fresh = true when the one-shot had
-- no hash: it runs without one, lib: lift).
local function lease(task, pol, enc, gen, due_at, attempt, kind, s, sdue)
  local ru, tk = s.ru, s.tk
  local supersedes = NONE
  if pol.overlap == 'cancel-previous' and ru > 0 and tk then
    supersedes = {}
    for token in string.gmatch(tk, '%S+') do
      local v = new_info[token]
      if v then
        new_info[token] = nil
        groups[task].live = groups[task].live - 1
      else
        v = redis.call('HGET', LEASE_INFO, token)
        if v then
          redis.call('HDEL', LEASE_INFO, token)
          shrunk = true
          release_group(group_of(token), 1)
        end
      end
      if v then
        local l = parse_lease(v, token)
        ru = ru - 1
        run_delta(task, -1)
        history(enc, l.dueAt, l.attempt, l.kind, 'lost', l.startedAt, now, now - l.startedAt, 'cancelled by a newer occurrence (overlap: cancel-previous)')
        supersedes[#supersedes + 1] = token
      end
    end
    tk = nil
  end
  local g = group_for(task, pol)
  g.n = g.n + 1
  g.live = g.live + 1
  local token = g.id .. '.' .. (DIGITS[g.n] or fmt(g.n))
  sdue = sdue or fmt(due_at)
  local sattempt = attempt == 1 and '1' or fmt(attempt)
  if s.fresh then
    -- A fresh plain one-shot: its B:o entry is its whole lease (lib: lift).
    local m = #new_plain
    new_plain[m + 1] = enc
    new_plain[m + 2] = token .. '|' .. sdue
    g.plain[#g.plain + 1] = enc
  else
    new_tokens[#new_tokens + 1] = token
    new_info[token] = gen .. '|' .. sdue .. '|' .. sattempt .. '|' .. kind .. '|' .. g.max .. '|' .. snow .. '|' .. enc
    tk = tk and (tk .. ' ' .. token) or token
    if s.claimed then
      redis.call('HSET', skey(enc), 'ru', ru + 1, 'tk', tk, 'lx', snow, 'at', sattempt, 'cl', '1')
    else
      redis.call('HSET', skey(enc), 'ru', ru + 1, 'tk', tk, 'lx', snow, 'at', sattempt)
    end
  end
  run_delta(task, 1)
  if attempt == 1 and kind == 'scheduled' and not s.p and #supersedes == 0 then
    runs[#runs + 1] = token .. '/' .. enc .. US .. sdue .. US
  else
    runs[#runs + 1] = token .. '/' .. enc .. US .. sdue .. US .. sattempt .. '|' .. kind .. '|' .. table.concat(supersedes, ' ') .. '|' .. (s.p or '')
  end
  return true
end

local function skip(enc, due_at, reason)
  redis.call('HINCRBY', skey(enc), 'sk', 1)
  history(enc, due_at, 1, 'scheduled', 'skipped', nil, now, nil, 'skipped (' .. reason .. ')')
  skipped[#skipped + 1] = { enc, fmt(due_at), reason }
end

local function has_buffered(enc)
  for _, e in ipairs(redis.call('LRANGE', wkey(enc), 0, -1)) do
    local member = string.match(e, '^[^|]*|(.*)$')
    if parse_occ(member).kind == 'buffered' then return true end
  end
  return false
end

-- Due times of a recurring schedule: `after(t)` the first one > t, `latest(from, at)` the
-- last one <= at (from is one), `between(from, to, limit)` those in [from, to].
local function series(kind, every, anchor, due, arr)
  local s = {}
  if kind == 'e' then
    local ev, an = tonumber(every), tonumber(anchor)
    function s.after(t)
      if t < an then return an end
      return an + (math.floor((t - an) / ev) + 1) * ev
    end
    function s.latest(from, at) return from + math.floor((at - from) / ev) * ev end
    function s.between(from, to, limit)
      local out = {}
      local t = from
      while t <= to and #out < limit do
        out[#out + 1] = t
        t = t + ev
      end
      return out
    end
    return s
  end
  local e = { due }
  for _, v in ipairs(arr) do e[#e + 1] = v end
  function s.after(t)
    for i = 1, #e do
      if e[i] > t then return e[i] end
    end
    return nil
  end
  function s.latest(from, at)
    local best = from
    for i = 1, #e do
      if e[i] <= at and e[i] > best then best = e[i] end
    end
    return best
  end
  function s.between(from, to, limit)
    local out = {}
    for i = 1, #e do
      if #out >= limit then break end
      if e[i] >= from and e[i] <= to then out[#out + 1] = e[i] end
    end
    return out
  end
  return s
end

local function advance(h, dk, enc, gen, kind, arr, nxt, enabled, ended)
  if kind == 'c' then
    local rest = {}
    if nxt ~= nil then
      for _, v in ipairs(arr) do
        if v > nxt then rest[#rest + 1] = v end
      end
    end
    local list = join_times(rest, 1)
    local nv = redis.call('HINCRBY', h, 'nv', 1)
    redis.call('HSET', h, 'd', fmt(nxt), 'nx', list)
    if nxt ~= nil and ended ~= '1' and #rest < LOW then
      local c = redis.call('HMGET', h, 'cr', 'tz')
      refill[#refill + 1] = { enc, gen, fmt(nv), fmt(nxt), list, 'low', c[1] or '', c[2] or '' }
    end
  else
    redis.call('HSET', h, 'd', fmt(nxt))
  end
  if nxt ~= nil and enabled then
    redis.call('ZADD', dk, fmt(nxt), enc)
  else
    redis.call('ZREM', dk, enc)
  end
end

-- Takes the schedule's scheduled occurrence; returns true (leased), nil (skipped or held back) or
-- 'held' (cron list must be refilled first: left due, untouched).
-- `due` may be nil (the caller had no need of the number): it is `sdue`, the score as a string.
local function take_scheduled(task, pol, dk, enc, due, sdue, plain)
  -- Most due members of a drain are plain one-shots without a hash: known from the batch's
  -- EXISTS (claim_task), else one cheap probe.
  local gen = nil
  if not plain then gen = redis.call('HGET', skey(enc), 'g') end
  if not gen then
    -- A plain one-shot, stored as this member only (lib: materialize): it runs as a new
    -- incarnation without a hash (lib: lift), its token for a gen.
    if done_key ~= dk then flush_done() end
    done_key = dk
    done_members[#done_members + 1] = enc
    done_prefix = false
    return lease(task, pol, enc, nil, due, 1, 'scheduled', FRESH, sdue)
  end
  due = due or tonumber(sdue)
  local h = skey(enc)
  local f = redis.call('HMGET', h, 'g', 'k', 'ev', 'an', 'nx', 'ne', 'nv', 'en', 'ru', 'tk', 'p')
  local state = { ru = num(f[9]) or 0, tk = f[10] or nil, p = f[11] or nil, claimed = false }
  local kind = f[2]
  local run_due = due
  if not kind then
    if done_key ~= dk then flush_done() end
    done_key = dk
    done_members[#done_members + 1] = enc
    done_prefix = false
    state.claimed = true
  else
    local arr = {}
    if kind == 'c' then
      arr = split_times(f[5])
      if f[6] ~= '1' and (#arr == 0 or arr[#arr] <= now) then
        local c = redis.call('HMGET', h, 'cr', 'tz')
        refill[#refill + 1] = { enc, gen, f[7] or '0', fmt(due), f[5] or '', 'cover', c[1] or '', c[2] or '' }
        return 'held'
      end
    end
    local s = series(kind, f[3], f[4], due, arr)
    local nxt = s.after(due)
    if nxt ~= nil and nxt <= now then
      -- Missed occurrences (nothing claimed them in time): the misfire policy decides.
      if pol.misfire == 'skip' then
        advance(h, dk, enc, gen, kind, arr, s.after(now), f[8] ~= '0', f[6])
        skip(enc, due, 'misfire')
        return nil
      elseif pol.misfire == 'run-all' then
        local from = due
        if due < now - pol.window then from = s.after(now - pol.window - 1) end
        local times = {}
        if from ~= nil then times = s.between(from, now, MAX_CATCHUP) end
        if #times > 0 then
          run_due = times[1]
          for i = 2, #times do push_extra(enc, gen, times[i], now, 1, 'catchup') end
        else
          run_due = s.latest(due, now)
        end
      else
        run_due = s.latest(due, now)
      end
      nxt = s.after(now)
    end
    advance(h, dk, enc, gen, kind, arr, nxt, f[8] ~= '0', f[6])
  end
  if state.ru > 0 and pol.overlap ~= 'allow' and pol.overlap ~= 'cancel-previous' then
    if not kind then
      redis.call('HSET', h, 'cl', '1')
      redis.call('HINCRBY', h, 'pe', 1)
      hold(enc, now, occurrence(enc, gen, run_due, 1, 'scheduled'))
      return nil
    end
    if pol.overlap == 'buffer-one' and not has_buffered(enc) then
      redis.call('HINCRBY', h, 'pe', 1)
      hold(enc, now, occurrence(enc, gen, run_due, 1, 'buffered'))
      return nil
    end
    skip(enc, run_due, 'overlap')
    return nil
  end
  return lease(task, pol, enc, gen, run_due, 1, 'scheduled', state)
end

local function take_extra(task, pol, member, at)
  local o = parse_occ(member)
  local h = skey(o.enc)
  local f = redis.call('HMGET', h, 'g', 'ru', 'tk', 'p')
  if f[1] ~= o.gen then return nil end -- fenced: its schedule was replaced or removed
  local state = { ru = num(f[2]) or 0, tk = f[3] or nil, p = f[4] or nil, claimed = false }
  if state.ru > 0 and pol.overlap ~= 'allow' and pol.overlap ~= 'cancel-previous' then
    hold(o.enc, at, member) -- still pending: released when the running run settles
    return nil
  end
  redis.call('HINCRBY', h, 'pe', -1)
  return lease(task, pol, o.enc, o.gen, o.dueAt, o.attempt, o.kind, state)
end

-- Claims up to `limit` due occurrences of one task, oldest first (the scheduled one first
-- on a tie), reading due entries in batches.
local function claim_task(task, pol, limit)
  local dk, xk = dkey(task), xkey(task)
  local taken, held, steps = 0, 0, 0
  while taken < limit and steps < MAX_STEPS do
    flush_done()
    local want = limit - taken
    -- Members due at one time (schedules made in bulk) are read without their scores: Redis
    -- formats every score it replies as text (%.17g), about 3/4 of the cost of reading a
    -- member. When at least 16 (or all we want) of the set's first members share the first
    -- one's score, their names are read by rank and that score once.
    local mains
    local same = 0
    local head = nil
    -- Extra occurrences are read up to here: with a batch of one due time that may stop short
    -- of `want`, only up to that time (a later extra must not pass the set's later members,
    -- which this batch did not read).
    local extras_to = snow
    if held == 0 then
      head = redis.call('ZRANGE', dk, '-inf', snow, 'BYSCORE', 'LIMIT', 0, 1, 'WITHSCORES')[2]
      if head then same = math.min(want, redis.call('ZCOUNT', dk, head, head)) end
    end
    if same >= 16 or (same > 0 and same >= want) then
      local names = redis.call('ZRANGE', dk, 0, same - 1)
      mains = {}
      for x = 1, #names do
        mains[2 * x - 1] = names[x]
        mains[2 * x] = head
      end
      if same < want then extras_to = head end
    else
      mains = redis.call('ZRANGE', dk, '-inf', snow, 'BYSCORE', 'LIMIT', held, want, 'WITHSCORES')
    end
    local extras = redis.call('ZRANGE', xk, '-inf', extras_to, 'BYSCORE', 'LIMIT', 0, want, 'WITHSCORES')
    if #mains == 0 and #extras == 0 then break end
    -- Whether none of these members has a hash (all plain one-shots, lib: materialize): one
    -- EXISTS for the batch instead of a probe per member (each redis.call from Lua costs
    -- about as much as the rest of a plain one-shot's claim). Nothing below gives a member
    -- read here a hash before it is taken.
    local plain = #mains > 0
    for from = 1, #mains, 2000 do
      -- 1000 keys a call at most: Lua 5.1's unpack stops near 8000 values.
      local ks = {}
      for k = from, math.min(#mains, from + 1999), 2 do ks[#ks + 1] = skey(mains[k]) end
      if redis.call('EXISTS', unpack(ks)) > 0 then
        plain = false
        break
      end
    end
    local i, j = 1, 1
    if plain and #extras == 0 then
      -- Only fresh plain one-shots (the bulk of a drain): what take_scheduled and lease do for
      -- each of them, inline, with the counts in locals (a Lua function call, a table field
      -- or a # costs about as much as the rest of such a run's work). `mains` holds at most
      -- `limit - taken` members.
      if done_key ~= dk then flush_done() end
      done_key = dk
      -- ZRANGE BYSCORE from -inf, LIMIT 0: the members are the set's first by rank.
      done_prefix = held == 0 and #done_members == 0
      local g = group_for(task, pol)
      local gid, gplain = g.id .. '.', g.plain
      local gn, np, nd, nr, ngp = g.n, #new_plain, #done_members, #runs, #gplain
      local count = #mains / 2
      for k = 1, #mains, 2 do
        local enc, sdue = mains[k], mains[k + 1]
        gn = gn + 1
        local token = gid .. (DIGITS[gn] or fmt(gn))
        nd = nd + 1
        done_members[nd] = enc
        np = np + 2
        new_plain[np - 1] = enc
        new_plain[np] = token .. '|' .. sdue
        ngp = ngp + 1
        gplain[ngp] = enc
        nr = nr + 1
        runs[nr] = token .. '/' .. enc .. US .. sdue .. US
      end
      g.n, g.live = gn, g.live + count
      run_delta(task, count)
      taken = taken + count
      steps = steps + count
      i = #mains + 1
    end
    while taken < limit and (i <= #mains or j <= #extras) do
      steps = steps + 1
      -- With no extra left to order against, a member's score stays a string (most of a drain).
      local main_at, extra_at = nil, math.huge
      if j <= #extras then
        extra_at = tonumber(extras[j + 1])
        main_at = i <= #mains and tonumber(mains[i + 1]) or math.huge
      end
      local run
      if i <= #mains and (main_at == nil or main_at <= extra_at) then
        run = take_scheduled(task, pol, dk, mains[i], main_at, mains[i + 1], plain)
        i = i + 2
        if run == 'held' then
          held = held + 1
          run = nil
        end
      else
        redis.call('ZREM', xk, extras[j])
        run = take_extra(task, pol, extras[j], extra_at)
        j = j + 2
      end
      if run then taken = taken + 1 end
    end
  end
  flush_done()
  return taken
end

-- ------------------------------------------------------------------ claim
local tasks = {}
for i = 0, ntasks - 1 do
  local a = 7 + i * 7
  tasks[#tasks + 1] = {
    name = ARGV[a + 1],
    pol = { overlap = ARGV[a + 2], misfire = ARGV[a + 3], window = tonumber(ARGV[a + 4]), attempts = tonumber(ARGV[a + 5]), lease = tonumber(ARGV[a + 6]) },
    limit = tonumber(ARGV[a + 7]),
  }
end
for _, t in ipairs(tasks) do
  if budget <= 0 then break end
  local limit = math.min(budget, t.limit)
  if limit > 0 then budget = budget - claim_task(t.name, t.pol, limit) end
end
flush_leases()
flush_running()
if shrunk then tidy(LEASE_INFO) end

local next_due = nil
local function consider(key)
  local r = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if r[2] then
    local v = tonumber(r[2])
    if next_due == nil or v < next_due then next_due = v end
  end
end
local counts = {}
for _, t in ipairs(tasks) do
  consider(dkey(t.name))
  consider(xkey(t.name))
  counts[#counts + 1] = redis.call('ZCOUNT', dkey(t.name), '-inf', snow) + redis.call('ZCOUNT', xkey(t.name), '-inf', snow)
end
consider(LEASES)
flush_wake()
return { snow, table.concat(runs, RS), skipped, lost, refill, fmt(next_due), counts }
