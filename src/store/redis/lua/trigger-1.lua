--[[
  trigger: queues a manual occurrence of one schedule, due now (never a flag: it cannot be
  lost to a held lease; it waits for the running run instead).

  KEYS[1] B:m
  ARGV[1] B   ARGV[2] wake channel   ARGV[3] enc
  Returns 1 when the schedule exists, else 0
]]
--@include "lib"
local enc = ARGV[3]
local gen = materialize(enc)
if not gen then return 0 end
local now = now_ms()
push_extra(enc, gen, now, now, 1, 'trigger')
flush_wake()
return 1
