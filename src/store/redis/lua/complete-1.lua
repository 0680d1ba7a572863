--[[
  complete: settles runs, fenced by lease token: a token that is no longer a current,
  unexpired lease changes nothing ('lease-lost'). A run of a replaced or removed schedule
  is accepted ('ok') but changes nothing either. A plain one-shot running without a hash
  (lib: lift) is deleted outright when it succeeds or fails for good; lifted otherwise.

  KEYS[1] B:m
  ARGV[1] B   ARGV[2] wake channel   ARGV[3] n
  ARGV[4] the n completions in one string: separated by RS (\30), each 'token US completion'
          (US = \31; tokens, numbers and JSON never hold control characters, and the client
          replaces these two in error messages). One string, not two arguments per run: each
          argument cost Redis about 0.45 us to read and hand to Lua. A completion is one of
    's<startedAt>|<durationMs>|<result JSON>'                    success
    'f<startedAt>|<durationMs>|<retryAt, '' = no retry>|<error>' failure
    'a'                                                          abandon (give back)
  Returns one character per completion, in order: 'o' ok, 'l' lease-lost
]]
--@include "lib"
local now = now_ms()
local n = tonumber(ARGV[3])
local out = {}
-- The leases of the whole batch in one call and one expiry read per lease group; released
-- in bulk at the end (nothing below reads B:l, B:L or B:g); a token given twice in one batch
-- is lost the second time.
local tokens, codes = {}, {}
for token, c in string.gmatch(ARGV[4], '([^\30\31]*)\31([^\30]*)') do
  tokens[#tokens + 1] = token
  codes[#codes + 1] = c
end
if #tokens ~= n then return redis.error_reply('schedkit complete: ' .. #tokens .. ' completions in the batch, ' .. n .. ' announced') end
local OUTCOMES = { s = 'success', f = 'failure', a = 'abandon' }
-- Per token: its lease info, group and the group's expiry (a number; false = none).
local infos, groups, exps, group_exp = {}, {}, {}, {}
for from = 1, n, 1000 do
  local got = redis.call('HMGET', LEASE_INFO, unpack(tokens, from, math.min(n, from + 999)))
  for j, v in ipairs(got) do infos[from + j - 1] = v end
end
for i, token in ipairs(tokens) do
  if infos[i] then
    local g = group_of(token)
    if g ~= nil then
      local e = group_exp[g]
      if e == nil then
        e = tonumber(redis.call('ZSCORE', LEASES, g)) or false
        group_exp[g] = e
      end
      groups[i] = g
      exps[i] = e
    end
  end
end
-- A lease group's runs are of one task: task_of once per group.
local group_task = {}
-- Which of them are plain one-shots running without a hash (lib: lift), in one call.
local plain = {}
do
  local encs, at = {}, {}
  for i = 1, n do
    if infos[i] and exps[i] and exps[i] > now then
      encs[#encs + 1] = string.match(infos[i], '^[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|(.*)$')
      at[#at + 1] = i
    end
  end
  for from = 1, #encs, 1000 do
    local got = redis.call('HMGET', PLAIN_RUNS, unpack(encs, from, math.min(#encs, from + 999)))
    for j, t in ipairs(got) do
      local i = at[from + j - 1]
      if t == tokens[i] then plain[i] = encs[from + j - 1] end
    end
  end
end
local released = {}
local plain_done = {}
local done = {}
for i = 0, n - 1 do
  local token, c = tokens[i + 1], codes[i + 1]
  local outcome = OUTCOMES[string.sub(c, 1, 1)] or 'abandon'
  local started, duration, result, err, retry_at = nil, nil, nil, nil, ''
  if outcome == 'failure' then
    started, duration, retry_at, err = string.match(c, '^f([^|]*)|([^|]*)|([^|]*)|(.*)$')
  end
  local v = infos[i + 1]
  local exp = exps[i + 1]
  local penc = plain[i + 1]
  if not v or not exp or exp <= now or done[token] then
    out[#out + 1] = 'l'
  elseif penc and outcome ~= 'abandon' and not (outcome == 'failure' and retry_at ~= '') then
    -- A plain one-shot's only run, finished: nothing of it is left (it had no hash).
    done[token] = true
    released[#released + 1] = i + 1
    plain_done[#plain_done + 1] = penc
    local g = groups[i + 1]
    local task = group_task[g]
    if task == nil then
      task = task_of(penc)
      group_task[g] = task
    end
    run_delta(task, -1)
    out[#out + 1] = 'o'
  else
    done[token] = true
    released[#released + 1] = i + 1
    if outcome == 'success' then started, duration, result = string.match(c, '^s([^|]*)|([^|]*)|(.*)$') end
    if penc then lift(penc, token, v) end
    local l = parse_lease(v, token)
    local h = skey(l.enc)
    local f = redis.call('HMGET', h, 'g', 'ru', 'tk', 'pe', 'k', 'cl')
    if f[1] == l.gen then
      local ru = (num(f[2]) or 1) - 1
      local retry = outcome == 'failure' and retry_at ~= ''
      run_delta(task_of(l.enc), -1)
      if outcome ~= 'abandon' and not retry and not f[5] and f[6] == '1' and ru == 0 and (num(f[4]) or 0) == 0 then
        -- A one-shot with nothing left: finished, it goes with its report (as settled() would).
        delete_schedule(l.enc)
      else
        set_running(h, ru, without_token(f[3], token))
        if outcome == 'abandon' then
          push_extra(l.enc, l.gen, l.dueAt, now, l.attempt, l.kind)
        else
          local e = nil
          if outcome == 'failure' then e = err end
          if e then
            redis.call('HSET', h, 'lf', fmt(now), 'ld', duration, 'le', e)
          else
            redis.call('HSET', h, 'lf', fmt(now), 'ld', duration)
            redis.call('HDEL', h, 'le')
          end
          if outcome == 'success' then
            redis.call('HINCRBY', h, 'ok', 1)
            redis.call('HSET', h, 'lr', result)
          elseif not retry then
            redis.call('HINCRBY', h, 'ko', 1)
          end
          history(l.enc, l.dueAt, l.attempt, l.kind, outcome, tonumber(started), now, tonumber(duration), e)
          if retry then push_extra(l.enc, l.gen, l.dueAt, tonumber(retry_at), l.attempt + 1, 'retry') end
        end
        settled(l.enc, now)
      end
    end
    out[#out + 1] = 'o'
  end
end
for from = 1, #plain_done, 1000 do
  redis.call('HDEL', PLAIN_RUNS, unpack(plain_done, from, math.min(#plain_done, from + 999)))
end
local per_group, group_order = {}, {}
local released_tokens = {}
for k, i in ipairs(released) do released_tokens[k] = tokens[i] end
for from = 1, #released_tokens, 1000 do
  redis.call('HDEL', LEASE_INFO, unpack(released_tokens, from, math.min(#released_tokens, from + 999)))
end
for _, i in ipairs(released) do
  local g = groups[i]
  if per_group[g] == nil then
    per_group[g] = 0
    group_order[#group_order + 1] = g
  end
  per_group[g] = per_group[g] + 1
end
for _, g in ipairs(group_order) do release_group(g, per_group[g]) end
if #released > 0 then tidy(LEASE_INFO) end
if #plain_done > 0 then tidy(PLAIN_RUNS) end
flush_running()
flush_wake()
return table.concat(out)
