//! The Lua scripts of the session store. Each runs atomically on the node that owns the user's
//! hash tag and does O(1) work, or O(sessions of the user) — at most `REFRESH_MAX_SESSIONS_PER_USER`
//! — never work that grows with a session's history.
//!
//! Keys (both under the user's hash tag, both with a TTL):
//! ```text
//! auth:{uid}:sessions  hash  familyId -> "seq:rotatedAt:expiresAt:endsAt" (ms, Redis clock)
//! auth:{uid}:rate      hash  tokens, at: the user's refresh token bucket
//! ```
//! `seq` is the family's current token number, `rotatedAt` when it was reached (0 for a new
//! family), `expiresAt` the idle expiry (last rotation + idle TTL, never past `endsAt`), `endsAt`
//! the absolute end of the session. The hash expires with its longest-lived family.
//!
//! Time is the Redis server's (`TIME`): Lambda hosts with drifting clocks agree on expiries, the
//! grace window and the bucket.

/// Helpers every script starts with. Numbers are formatted with `%.0f` because Lua 5.1 numbers are
/// doubles and `tostring` switches to exponent notation, which `PEXPIREAT` refuses.
const PRELUDE: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function ms(n) return string.format('%.0f', n) end
local function decode(v)
  local seq, rotated, exp, ends = string.match(v or '', '^(%d+):(%d+):(%d+):(%d+)$')
  if not seq then return nil end
  return {seq = tonumber(seq), rotated = tonumber(rotated), exp = tonumber(exp), ends = tonumber(ends)}
end
local function encode(f)
  return string.format('%.0f:%.0f:%.0f:%.0f', f.seq, f.rotated, f.exp, f.ends)
end
"#;

/// Starts a family. KEYS: sessions. ARGV: family id, idle TTL ms, lifetime ms, sessions cap.
/// Drops the user's expired families, evicts the least recently refreshed ones down to cap - 1,
/// then adds the new one at number 0. Returns {'issued', ms until idle expiry, evicted}.
/// Resent after a lost reply it writes the same family again: safe to retry.
pub const ISSUE: &str = r#"
local now = now_ms()
local all = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #all, 2 do
  local f = decode(all[i + 1])
  if f == nil or f.exp <= now then
    redis.call('HDEL', KEYS[1], all[i])
  elseif all[i] ~= ARGV[1] then
    table.insert(live, {all[i], f.exp})
  end
end
table.sort(live, function(a, b) return a[2] < b[2] end)
local evicted = 0
while #live >= tonumber(ARGV[4]) do
  redis.call('HDEL', KEYS[1], live[1][1])
  table.remove(live, 1)
  evicted = evicted + 1
end
local ends = now + tonumber(ARGV[3])
local exp = math.min(now + tonumber(ARGV[2]), ends)
redis.call('HSET', KEYS[1], ARGV[1], encode({seq = 0, rotated = 0, exp = exp, ends = ends}))
local last = exp
for _, l in ipairs(live) do if l[2] > last then last = l[2] end end
redis.call('PEXPIREAT', KEYS[1], ms(last))
return {'issued', exp - now, evicted}
"#;

/// Rotates. KEYS: sessions, rate. ARGV: family id, presented number, idle TTL ms, grace ms,
/// bucket size, refill per ms, bucket TTL ms.
///
/// First the family, then (only for a token that can be honoured) the user's token bucket:
/// - no family, or past its idle or absolute expiry → {'unknown'} / {'expired'};
/// - any earlier number than the current one (outside the grace window) → reuse: the family is
///   deleted ({'reused'}); a later one → {'unknown'};
/// - the bucket empty → {'limited', ms until a token};
/// - the current number → the next one (the successor), {'rotated', seq, ms to expiry};
/// - the number just before, inside the grace window of the last rotation → the same successor
///   again, nothing written ({'retried', ...}): two tabs, or a reply lost and resent.
///
/// Why the family comes first (issue 26): a token of a revoked, superseded or unknown session must
/// not spend the user's refresh budget, or replaying one dead token ten times a minute keeps every
/// live session of the user at 429. Refusing it costs one `HGET` and writes nothing (no bucket is
/// created or touched), so a flood of dead tokens stays O(1) per request and uses no memory.
pub const ROTATE: &str = r#"
local now = now_ms()
local f = decode(redis.call('HGET', KEYS[1], ARGV[1]))
if f == nil then return {'unknown', 0, 0} end
if now >= f.exp then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return {'expired', 0, 0}
end
local seq = tonumber(ARGV[2])
local current = seq == f.seq
if not current and not (seq == f.seq - 1 and now - f.rotated < tonumber(ARGV[4])) then
  if seq < f.seq then
    redis.call('HDEL', KEYS[1], ARGV[1])
    return {'reused', f.seq, 0}
  end
  return {'unknown', 0, 0}
end

local size, per_ms = tonumber(ARGV[5]), tonumber(ARGV[6])
local b = redis.call('HMGET', KEYS[2], 'tokens', 'at')
local tokens, at = tonumber(b[1]), tonumber(b[2])
if tokens == nil or at == nil then tokens, at = size, now end
tokens = math.min(size, tokens + math.max(0, now - at) * per_ms)
local allowed = tokens >= 1
if allowed then tokens = tokens - 1 end
redis.call('HSET', KEYS[2], 'tokens', string.format('%.6f', tokens), 'at', ms(now))
redis.call('PEXPIRE', KEYS[2], ARGV[7])
if not allowed then return {'limited', math.ceil((1 - tokens) / per_ms), 0} end

if current then
  f.seq = f.seq + 1
  f.rotated = now
  f.exp = math.min(now + tonumber(ARGV[3]), f.ends)
  redis.call('HSET', KEYS[1], ARGV[1], encode(f))
  redis.call('PEXPIREAT', KEYS[1], ms(f.exp), 'GT')
  return {'rotated', f.seq, f.exp - now}
end
return {'retried', f.seq, f.exp - now}
"#;

/// Ends one family (logout). KEYS: sessions. ARGV: family id. Any token the family ever had will
/// do: its holder wants the session gone. Returns {'revoked'|'unknown', 0, 0}.
pub const END: &str = r#"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then return {'revoked', 0, 0} end
return {'unknown', 0, 0}
"#;

/// Ends every family of a user: one `DEL` of one hash of at most cap fields.
/// KEYS: sessions. Returns {'revoked', live families, 0}.
pub const END_ALL: &str = r#"
local now = now_ms()
local all = redis.call('HGETALL', KEYS[1])
local live = 0
for i = 2, #all, 2 do
  local f = decode(all[i])
  if f ~= nil and f.exp > now then live = live + 1 end
end
redis.call('DEL', KEYS[1])
return {'revoked', live, 0}
"#;

/// The four scripts with the prelude prepended, hashed once: invoked by SHA, loaded on a miss.
pub struct Scripts {
    /// [`ISSUE`]: starts a family.
    pub issue: redis::Script,
    /// [`ROTATE`]: refreshes a family.
    pub rotate: redis::Script,
    /// [`END`]: ends one family.
    pub end: redis::Script,
    /// [`END_ALL`]: ends every family of a user.
    pub end_all: redis::Script,
}

impl Scripts {
    /// Builds the scripts: hashing only, no Redis call.
    pub fn new() -> Self {
        let script = |body: &str| redis::Script::new(&format!("{PRELUDE}{body}"));
        Self { issue: script(ISSUE), rotate: script(ROTATE), end: script(END), end_all: script(END_ALL) }
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Self::new()
    }
}

/// Every script answers `{status, number, number}`.
pub type Reply = (String, i64, i64);
