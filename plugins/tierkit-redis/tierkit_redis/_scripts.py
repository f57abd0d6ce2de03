"""Lua run by Redis for the tag index; each call is atomic on the server.

Tag sets (``<key_prefix>t:<tag>``; in a cluster one per slot, see
:mod:`tierkit_redis._cluster`) hold the Redis keys of the entries set with that tag.
Entries rewritten without a tag stay in its set until the next invalidation of the tag,
which therefore checks each member's own tags (read from the value header, see
:mod:`tierkit_redis._format`) before unlinking it.
"""

from __future__ import annotations

_ADD_TO_SETS = """
for i = {first}, #KEYS do
  local left = redis.call('PTTL', KEYS[i])
  redis.call('SADD', KEYS[i], {member}){prune}
  if ttl == 0 then
    redis.call('PERSIST', KEYS[i])
  elseif left == -2 or (left >= 0 and left < ttl) then
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
return 1
"""
"""Add ``member`` to the sets KEYS[first..]; a set lives as long as its longest-lived member.

It is made persistent for a member without expiry (``ttl`` 0), and its expiry is only
ever extended (PTTL -2 = new set, -1 = persistent).
"""

_PRUNE = """
  for _, member in ipairs(redis.call('SRANDMEMBER', KEYS[i], 2)) do
    if redis.call('EXISTS', member) == 0 then redis.call('SREM', KEYS[i], member) end
  end"""
"""Check two random members of a tag set and drop those that expired or were deleted: a set
then stays within about twice its live members (each member added is later checked at twice
the rate members die) instead of growing forever."""

TAGGED_SET = """
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[1])
end""" + _ADD_TO_SETS.format(first=2, member="KEYS[1]", prune=_PRUNE)
"""Store an entry and index it under its tags.

KEYS: the entry, then its tag sets.  ARGV: the stored bytes, the TTL in ms (0 = none).
"""

REGISTER = "\nlocal ttl = tonumber(ARGV[2])" + _ADD_TO_SETS.format(first=1, member="ARGV[1]", prune="")
"""Cluster only: record in each tag's registry (KEYS) that a slot (ARGV[1]) holds a set of it.

ARGV[2]: the TTL in ms of the entry being indexed (0 = none), which the registry must outlive.
"""

INVALIDATE = """
local n = tonumber(ARGV[1])
local wanted = {}
for i = 2, n + 1 do wanted[ARGV[i]] = true end
local removed = 0
for i = n + 1, #KEYS do
  local raw = redis.call('GET', KEYS[i])
  if raw and #raw >= 11 and string.byte(raw, 1) == 1 then
    local pos = 12
    local stop = pos + string.byte(raw, 10) + 256 * string.byte(raw, 11)
    while pos + 1 < stop do
      local size = string.byte(raw, pos) + 256 * string.byte(raw, pos + 1)
      if wanted[string.sub(raw, pos + 2, pos + 1 + size)] then
        removed = removed + redis.call('UNLINK', KEYS[i])
        break
      end
      pos = pos + 2 + size
    end
  end
  for j = 1, n do redis.call('SREM', KEYS[j], KEYS[i]) end
end
return removed
"""
"""Unlink the entries that still carry one of the tags, and drop them all from the sets.

KEYS: the n tag sets, then a batch of their members.  ARGV: n, then the n tag names.
Returns the number of entries removed.
"""

LOCK = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
"""Take the lock KEYS[1] for the token ARGV[1] for ARGV[2] ms (``SET NX PX``), or extend it if
that token already holds it.  Returns 1 if the token holds it now, 0 if another one does."""

UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
"""Release the lock KEYS[1] only if the token ARGV[1] holds it (an expired lock may be another's)."""
