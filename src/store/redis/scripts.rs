//! The Lua scripts that make each multi-key change atomic. Every script names all its keys
//! in KEYS (none is built from ARGV), and all of one script's keys share a hash tag, so
//! each runs on one Redis Cluster slot: a session's keys are tagged `{sid}`, a user's
//! `{openid}` (or `{unionid}`), and the revocation feed's sorted set is one key.

/// KEYS: user index, and the user's blocks (absent for the unionid index);
/// ARGV: appid, member (`"{appid} {sid}"`), expires_at, now.
///
/// Returns the end of a block that refuses the login (and indexes nothing), else 0 after
/// indexing the session until `expires_at` (a later expiry already known is kept).
pub(super) const ADMIT: &str = r"
local now = tonumber(ARGV[4])
if KEYS[2] then
  local blocked = 0
  for _, field in ipairs({ARGV[1], '*'}) do
    local ends = tonumber(redis.call('HGET', KEYS[2], field) or '0') or 0
    if ends > now and ends > blocked then blocked = ends end
  end
  if blocked > 0 then return blocked end
end
redis.call('ZADD', KEYS[1], 'GT', ARGV[3], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[4])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then redis.call('EXPIREAT', KEYS[1], last[2]) end
return 0
";

/// KEYS: session, refresh; ARGV: expires_at, sid, then the session's fields and values.
pub(super) const CREATE: &str = r"
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('EXPIREAT', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2], 'EXAT', ARGV[1])
return 1
";

/// KEYS: refresh(old), refresh(new), session, the session's revocation mark;
/// ARGV: expires_at, revoke_until, now.
///
/// A spent token revokes the session (the caller then announces it); a live one is spent
/// and the session renewed and returned.
pub(super) const ROTATE: &str = r"
local found = redis.call('GET', KEYS[1])
if not found then return {'invalid'} end
if string.sub(found, 1, 1) == '!' then
  redis.call('DEL', KEYS[3])
  local marked = tonumber(redis.call('GET', KEYS[4]) or '0') or 0
  if tonumber(ARGV[2]) > marked then redis.call('SET', KEYS[4], ARGV[2], 'EXAT', ARGV[2]) end
  return {'reused', string.sub(found, 2)}
end
if redis.call('EXISTS', KEYS[3]) == 0 or redis.call('EXISTS', KEYS[4]) == 1 then
  return {'invalid'}
end
redis.call('SET', KEYS[1], '!' .. found, 'KEEPTTL')
redis.call('SET', KEYS[2], found, 'EXAT', ARGV[1])
redis.call('HSET', KEYS[3], 'expires_at', ARGV[1], 'refreshed_at', ARGV[3])
redis.call('EXPIREAT', KEYS[3], ARGV[1])
local out = {'rotated', found}
for _, v in ipairs(redis.call('HGETALL', KEYS[3])) do out[#out + 1] = v end
return out
";

/// KEYS: session, its revocation mark; ARGV: until.
///
/// The session's own slot forgets it and marks it revoked, so its refresh tokens fail
/// from now on even if the session was being created at this moment.
pub(super) const END: &str = r"
redis.call('DEL', KEYS[1])
local marked = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if tonumber(ARGV[1]) > marked then redis.call('SET', KEYS[2], ARGV[1], 'EXAT', ARGV[1]) end
return 1
";

/// KEYS: the revocation sorted set; ARGV: until, now, channel, then the session ids.
///
/// The second, idempotent step of a revocation: record it for instances that connect
/// later and announce it to those connected now.
pub(super) const ANNOUNCE: &str = r"
for i = 4, #ARGV do
  redis.call('ZADD', KEYS[1], 'GT', ARGV[1], ARGV[i])
  redis.call('PUBLISH', ARGV[3], ARGV[i] .. ' ' .. ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2])
return 1
";

/// KEYS: the user's blocks; ARGV: appid or `*`, until, now.
///
/// Sets one block, drops the ones that have ended, and keeps the hash as long as its
/// latest block.
pub(super) const BLOCK: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local now = tonumber(ARGV[3])
local latest = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local ends = tonumber(all[i + 1]) or 0
  if ends <= now then redis.call('HDEL', KEYS[1], all[i])
  elseif ends > latest then latest = ends end
end
if latest > 0 then redis.call('EXPIREAT', KEYS[1], latest) end
return 1
";

/// KEYS: the user's blocks; ARGV: appid or `*`, now. 1 when a block still in force was
/// lifted.
pub(super) const UNBLOCK: &str = r"
local ends = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') or 0
redis.call('HDEL', KEYS[1], ARGV[1])
if ends > tonumber(ARGV[2]) then return 1 end
return 0
";

/// KEYS: shared value; ARGV: the value it must still hold.
pub(super) const FORGET_IF: &str = r"
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local space = string.find(current, ' ', 1, true)
if space and string.sub(current, space + 1) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// KEYS: session; ARGV: phone. Never recreates a session that expired or was revoked.
pub(super) const SET_PHONE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'phone', ARGV[1])
return 1
";
