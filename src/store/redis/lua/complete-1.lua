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
local k = 0
for token, enc, c in string.gmatch(ARGV[4], '([^\30\31/]*)/([^\30\31]*)\31([^\30]*)') do
  k = k + 1
  tokens[k] = token
  encs[k] = enc
  codes[k] = c
end
if k ~= n then return redis.error_reply('schedkit complete: ' .. k .. ' completions in the batch, ' .. n .. ' announced') end
local OUTCOMES = { s = 'success', f = 'failure', a = 'abandon' }
-- The leases of the whole batch, in bulk: plain one-shots running without a hash by their
-- B:o entries (lib: lift; one call), the others' lease info in B:l (another, when there are
-- any); one expiry read per lease group. Released in bulk at the end (nothing below reads
-- B:l, B:o, B:L or B:g but lift); a token given twice in one batch is lost the second time.
local plain, infos = {}, {}
local others, others_at, no = {}, {}, 0
for from = 1, n, 1000 do
  local got = redis.call('HMGET', PLAIN_RUNS, unpack(encs, from, math.min(n, from + 999)))
  for j, v in ipairs(got) do
    local i = from + j - 1
    if names_token(v, tokens[i]) then
      plain[i] = v
    else
      no = no + 1
      others[no] = tokens[i]
      others_at[no] = i
    end
  end
end
for from = 1, no, 1000 do
  local got = redis.call('HMGET', LEASE_INFO, unpack(others, from, math.min(no, from + 999)))
  for j, v in ipairs(got) do
    if v then infos[others_at[from + j - 1]] = v end
  end
end
-- Per lease group (the runs of one task in one claim): its expiry, read once; its task, found
-- once; how many of its runs gave their lease back here, and how many of those were plain.
local group_exp, group_task, per_group, plain_per_group, group_order = {}, {}, {}, {}, {}
local plain_done, info_done, done = {}, {}, {}
local np, ni = 0, 0
for i = 1, n do
  local token, c = tokens[i], codes[i]
  local pv = plain[i]
  local g = nil
  local live = false
  if (pv or infos[i]) and not done[token] then
    g = group_of(token)
    if g ~= nil then
      local e = group_exp[g]
      if e == nil then
        e = tonumber(redis.call('ZSCORE', LEASES, g)) or false
        group_exp[g] = e
      end
      live = e and e > now
    end
  end
  if not live then
    out[i] = 'l'
  else
    done[token] = true
    local k = per_group[g]
    if k == nil then
      k = 0
      group_order[#group_order + 1] = g
      plain_per_group[g] = 0
    end
    per_group[g] = k + 1
    local first = string.byte(c, 1)
    if pv and (first == 115 or (first == 102 and string.match(c, '^f[^|]*|[^|]*|([^|]*)|') == '')) then
      -- A plain one-shot's only run, finished (a success, or a failure with no retry):
      -- nothing of it is left (it had no hash).
      np = np + 1
      plain_done[np] = encs[i]
      if group_task[g] == nil then group_task[g] = task_of(encs[i]) end
      plain_per_group[g] = plain_per_group[g] + 1
      out[i] = 'o'
    else
      ni = ni + 1
      info_done[ni] = token
      local outcome = OUTCOMES[string.sub(c, 1, 1)] or 'abandon'
      local started, duration, result, err, retry_at = nil, nil, nil, nil, ''
      if outcome == 'failure' then
        started, duration, retry_at, err = string.match(c, '^f([^|]*)|([^|]*)|([^|]*)|(.*)$')
      elseif outcome == 'success' then
        started, duration, result = string.match(c, '^s([^|]*)|([^|]*)|(.*)$')
      end
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
      out[i] = 'o'
    end
  end
end
for from = 1, np, 1000 do
  redis.call('HDEL', PLAIN_RUNS, unpack(plain_done, from, math.min(np, from + 999)))
end
for from = 1, ni, 1000 do
  redis.call('HDEL', LEASE_INFO, unpack(info_done, from, math.min(ni, from + 999)))
end
for _, g in ipairs(group_order) do
  release_group(g, per_group[g])
  if plain_per_group[g] > 0 then run_delta(group_task[g], -plain_per_group[g]) end
end
if ni > 0 then tidy(LEASE_INFO) end
if np > 0 then tidy(PLAIN_RUNS) end
flush_running()
flush_wake()
return table.concat(out)
