--[[
  spec: resolving a schedule's first due time and writing its timing fields (upsert, update).
  For cron the caller (JS, where croner lives) sends `list`: ascending due times that cover
  this server's now (computed from its estimate of our clock, with a margin); we keep the
  ones after the due time we pick. `every` needs no list: anchor + k * every.
]]

-- Returns the due time (nil = never), or nil, true when the cron list does not reach `now`
-- (the caller's clock estimate was too far off: it retries with a fresh one).
local function resolve_first(kind, mode, val, every, list, ended, now)
  if mode == 'at' then return tonumber(val) end
  if mode == 'in' then return now + tonumber(val) end
  if kind == 'e' then return now + tonumber(every) end
  if kind == 'c' then
    for _, t in ipairs(split_times(list)) do
      if t > now then return t end
    end
    if ended == '1' then return nil end
    return nil, true
  end
  return nil
end

-- Appends the timing fields of a new spec to `fields` (field, value, ...). A new cron list
-- gets version nv = 1; callers that keep the incarnation bump nv instead (update).
local function spec_fields(fields, kind, every, cron, tz, due, list, ended, now)
  local function add(k, v)
    fields[#fields + 1] = k
    fields[#fields + 1] = v
  end
  if kind == 'e' then
    add('k', 'e')
    add('ev', every)
    add('an', fmt(due or now))
  elseif kind == 'c' then
    local rest = {}
    if due ~= nil then
      for _, t in ipairs(split_times(list)) do
        if t > due then rest[#rest + 1] = t end
      end
    end
    add('k', 'c')
    add('cr', cron)
    add('nx', join_times(rest, 1))
    add('ne', ended)
    add('nv', '1')
    if tz ~= '' then add('tz', tz) end
  end
end
