--[[
  init: records the namespace's partition count on first use and returns what is recorded,
  so a store opened with another count is refused (keys would land in other partitions).
  KEYS[1] <prefix>:{<prefix>}:meta   ARGV[1] partitions   ARGV[2] key-layout format
  Returns { partitions, format }
]]
redis.call('HSETNX', KEYS[1], 'partitions', ARGV[1])
redis.call('HSETNX', KEYS[1], 'format', ARGV[2])
return redis.call('HMGET', KEYS[1], 'partitions', 'format')
