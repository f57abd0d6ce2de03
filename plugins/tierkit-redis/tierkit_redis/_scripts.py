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

_SET_PX = """
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[1])
end"""
"""``SET`` the entry with its TTL in milliseconds (``ARGV[2]``; 0: none)."""

TAGGED_SET = _SET_PX + _ADD_TO_SETS.format(first=2, member="KEYS[1]", prune=_PRUNE)
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

_LIVE = """
local raw = redis.call('GET', KEYS[1])
if not raw or #raw < 11 then return false end
local version, deadline, tags_len = struct.unpack('<BdH', raw)
if version ~= 1 or deadline <= tonumber(ARGV[1]) then return false end
"""
"""Shared head of the scripts below: ``raw`` is the live entry (header: :mod:`tierkit_redis._format`),
or the script answers nil.  ARGV[1]: now, on the chain's clock."""

ADD = (
    """
local raw = redis.call('GET', KEYS[1])
if raw and #raw >= 11 then
  local version, deadline = struct.unpack('<Bd', raw)
  if version == 1 and deadline > tonumber(ARGV[3]) then return 0 end
end"""
    + TAGGED_SET
)
"""``TAGGED_SET`` unless a live entry is there: 1 if stored, 0 if not (first writer wins).

KEYS: the entry, then its tag sets.  ARGV: the stored bytes, the TTL in ms (0 = none), now.
"""

INCR = (
    _LIVE
    + """
local head = 11 + tags_len
local digits = string.sub(raw, head + 1)
if not string.match(digits, '^%-?%d+$') or #digits > 16 then
  return redis.error_reply('NOTACOUNTER the stored value is not an integer the redis tier counts')
end
local value = tonumber(digits)
if math.abs(value) >= 9007199254740992 or math.abs(value + tonumber(ARGV[2])) >= 9007199254740992 then
  return redis.error_reply('NOTACOUNTER the count would reach 2**53, beyond what a redis script adds exactly')
end
raw = string.sub(raw, 1, head) .. string.format('%.0f', value + tonumber(ARGV[2]))
redis.call('SET', KEYS[1], raw, 'KEEPTTL')
return raw
"""
)
"""Add ARGV[2] to the counter (decimal digits) of a live entry, keeping its header and TTL.

KEYS: the entry.  ARGV: now, delta.  Returns the new stored bytes, nil if no live entry.
"""

TOUCH = (
    _LIVE
    + """
local ttl = tonumber(ARGV[3])
raw = struct.pack('<Bd', 1, ttl == 0 and math.huge or tonumber(ARGV[2])) .. string.sub(raw, 10)
if ttl > 0 then
  redis.call('SET', KEYS[1], raw, 'PX', ttl)
else
  redis.call('SET', KEYS[1], raw)
end
return raw
"""
)
"""Give a live entry a new deadline in its header and in Redis, without sending its value.

KEYS: the entry.  ARGV: now, the new deadline, the TTL in ms (0 = none).  Returns the
rewritten bytes (so the caller can extend its tag sets), nil if no live entry.
"""

SET_ANNOUNCED = (
    _SET_PX
    + """
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
"""
)
"""Store an untagged entry and announce it on the backplane, in one command (docs/coherence.md):
of the ways to send ``SET`` and ``PUBLISH`` in one round trip, the one the client spends least on.

KEYS: the entry.  ARGV: the stored bytes, the TTL in ms (0 = none), the channel, the message.
"""

UNLINK_ANNOUNCED = """
local removed = redis.call('UNLINK', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return removed
"""
"""Unlink an entry and announce it on the backplane, in one command.

KEYS: the entry.  ARGV: the channel, the message.  Returns 1 if the entry was there.
"""
