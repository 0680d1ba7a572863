--[[
  complete: settles runs, fenced by lease token: a token that is no longer a current,
  unexpired lease changes nothing ('lease-lost'). A run of a replaced or removed schedule
  is accepted ('ok') but changes nothing either. A plain one-shot running without a hash
  (lib: lift) is deleted outright when it succeeds or fails for good; lifted otherwise.

  KEYS[1] B:m
  ARGV[1] B   ARGV[2] wake channel   ARGV[3] n
  ARGV[4] the n completions in one string: separated by RS (\30), each 'token/enc US completion'
          (US = \31; tokens, names, numbers and JSON never hold control characters, and the
          client replaces these two in error messages; tokens never hold '/'). One string, not two arguments per run: each
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
local tokens, encs, codes = {}, {}, {}
for token, enc, c in string.gmatch(ARGV[4], '([^\30\31/]*)/([^\30\31]*)\31([^\30]*)') do
  local k = #tokens + 1
  tokens[k] = token
  encs[k] = enc
  codes[k] = c
end
if #tokens ~= n then return redis.error_reply('schedkit complete: ' .. #tokens .. ' completions in the batch, ' .. n .. ' announced') end
local OUTCOMES = { s = 'success', f = 'failure', a = 'abandon' }
-- The leases of the whole batch, in bulk: plain one-shots running without a hash by their
-- B:o entries (lib: lift; one call), the others' lease info in B:l (another, when there are
-- any); one expiry read per lease group. Released in bulk at the end (nothing below reads
-- B:l, B:o, B:L or B:g but lift); a token given twice in one batch is lost the second time.
local plain, infos, exps, groups, group_exp = {}, {}, {}, {}, {}
local others, others_at = {}, {}
for from = 1, n, 1000 do
  local got = redis.call('HMGET', PLAIN_RUNS, unpack(encs, from, math.min(n, from + 999)))
  for j, v in ipairs(got) do
    local i = from + j - 1
    if names_token(v, tokens[i]) then
      plain[i] = v
    else
      others[#others + 1] = tokens[i]
      others_at[#others_at + 1] = i
    end
  end
end
for from = 1, #others, 1000 do
  local got = redis.call('HMGET', LEASE_INFO, unpack(others, from, math.min(#others, from + 999)))
  for j, v in ipairs(got) do
    if v then infos[others_at[from + j - 1]] = v end
  end
end
for i = 1, n do
  if plain[i] or infos[i] then
    local g = group_of(tokens[i])
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
local released = {}
local plain_done = {}
local info_done = {}
local done = {}
for i = 1, n do
  local token, c = tokens[i], codes[i]
  local outcome = OUTCOMES[string.sub(c, 1, 1)] or 'abandon'
  local started, duration, result, err, retry_at = nil, nil, nil, nil, ''
  if outcome == 'failure' then
    started, duration, retry_at, err = string.match(c, '^f([^|]*)|([^|]*)|([^|]*)|(.*)$')
  end
  local pv = plain[i]
  local exp = exps[i]
  if (not pv and not infos[i]) or not exp or exp <= now or done[token] then
    out[#out + 1] = 'l'
  elseif pv and outcome ~= 'abandon' and not (outcome == 'failure' and retry_at ~= '') then
    -- A plain one-shot's only run, finished: nothing of it is left (it had no hash).
    done[token] = true
    released[#released + 1] = i
    plain_done[#plain_done + 1] = encs[i]
    local g = groups[i]
    local task = group_task[g]
    if task == nil then
      task = task_of(encs[i])
      group_task[g] = task
    end
    run_delta(task, -1)
    out[#out + 1] = 'o'
  else
    done[token] = true
    released[#released + 1] = i
    info_done[#info_done + 1] = token
    if outcome == 'success' then started, duration, result = string.match(c, '^s([^|]*)|([^|]*)|(.*)$') end
    local v = infos[i]
    if pv then v = lift(encs[i], token, pv) end
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
for from = 1, #info_done, 1000 do
  redis.call('HDEL', LEASE_INFO, unpack(info_done, from, math.min(#info_done, from + 999)))
end
local per_group, group_order = {}, {}
for _, i in ipairs(released) do
  local g = groups[i]
  if per_group[g] == nil then
    per_group[g] = 0
    group_order[#group_order + 1] = g
  end
  per_group[g] = per_group[g] + 1
end
for _, g in ipairs(group_order) do release_group(g, per_group[g]) end
if #info_done > 0 then tidy(LEASE_INFO) end
if #plain_done > 0 then tidy(PLAIN_RUNS) end
flush_running()
flush_wake()
return table.concat(out)
