//! The Lua scripts: the GCRA, where one round trip decides any number of
//! calls of one key, and the fleet breaker's and the fleet budget's syncs.

use redis::Script;

/// `KEYS[1]`: the key's theoretical arrival time (TAT), in microseconds of
/// the script's clock. `ARGV`: the tokens wanted, the emission interval and
/// the tolerance (`(burst - 1) * interval`) in microseconds, and the time
/// now in microseconds since the Unix epoch (0: read Redis's `TIME`).
///
/// It grants as many of the wanted tokens as conform now (the TAT may run
/// at most the tolerance ahead of now before each one), advances the TAT by
/// one interval per token granted, and keeps the key only as long as the
/// TAT is ahead of now (`PX`: past that, an absent key means the same).
/// It returns `{granted, wait}`: `wait` is the time in microseconds until
/// the next token conforms, 0 if one conforms now.
///
/// Lua numbers are doubles: microseconds since the epoch need 51 bits, well
/// within the 53 of a double's mantissa, and `%.0f` writes them exactly.
const GCRA: &str = r"
local wanted = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
if now == 0 then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then
  tat = now
end
local granted = 0
if tat <= now + tolerance then
  granted = math.min(wanted, math.floor((now + tolerance - tat) / interval) + 1)
end
if granted > 0 then
  tat = tat + granted * interval
  local ttl = math.ceil((tat - now) / 1000) + 1
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', string.format('%.0f', ttl))
end
local wait = 0
if tat - tolerance > now then
  wait = tat - tolerance - now
end
return {granted, wait}
";

/// The script, hashed once (invoked by `EVALSHA`, loaded again by the
/// client when Redis answers `NOSCRIPT`, as after a restart).
pub(crate) fn gcra() -> Script {
    Script::new(GCRA)
}

/// The start of both sync scripts: Redis's time (`sec`, and `now` in
/// milliseconds), and the instance `ARGV[1]` marked live in the sorted set
/// `KEYS[1]`, where members older than `ARGV[2]` ms are dropped.
const SYNC: &str = r"
local t = redis.call('TIME')
local sec = tonumber(t[1])
local now = sec * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = ARGV[1]
local live_ms = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, id)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - live_ms)
redis.call('PEXPIRE', KEYS[1], live_ms * 2)
";

/// The fleet breaker's sync: one call per instance and period.
///
/// `KEYS`: the live set, the state hash, the prober key, the "sees" set.
/// `ARGV`: the instance, how long an instance counts as live (ms), the
/// generation it knows (-1: none), its calls and
/// failures since its last sync, whether it sees the rate (0/1), a manual
/// state to publish (or ""), a probe report ("", "ok", "fail", or
/// "probing": the prober is still half-open, and its key is refreshed)
/// and the generation it is about, the wait after a failed probe (ms), the
/// wait after a fleet open (ms), the window (s), the threshold (hundredths
/// of a percent), the fleet's minimum calls, the quorum (a count, or 0 and
/// a fraction in millionths), the prober's TTL (ms), and the prefix of
/// the bucket keys.
///
/// Returns `{state, generation, open ms left, prober, elected, opened,
/// fleet calls, fleet failures, instances seeing, live instances}`. The
/// time is Redis's (`TIME`), in milliseconds.
const FLEET_BREAKER: &str = r"
local window = tonumber(ARGV[12])
local prober_ttl = tonumber(ARGV[17])
local buckets = ARGV[18]
local mode = redis.call('HGET', KEYS[2], 'mode') or 'closed'
local gen = tonumber(redis.call('HGET', KEYS[2], 'gen') or '0')
local open_until = tonumber(redis.call('HGET', KEYS[2], 'until') or '0')
local since = tonumber(redis.call('HGET', KEYS[2], 'since') or '0')
local elected, opened = 0, 0

redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - live_ms)
if tonumber(ARGV[3]) == gen then
  local calls = tonumber(ARGV[4])
  if calls > 0 then
    local bucket = buckets .. sec
    redis.call('HINCRBY', bucket, 'calls', calls)
    redis.call('HINCRBY', bucket, 'failures', tonumber(ARGV[5]))
    redis.call('PEXPIRE', bucket, (window + 2) * 1000)
  end
  if ARGV[6] == '1' then
    redis.call('ZADD', KEYS[4], now, id)
    redis.call('PEXPIRE', KEYS[4], live_ms * 2)
  else
    redis.call('ZREM', KEYS[4], id)
  end
else
  redis.call('ZREM', KEYS[4], id)
end

local function enter(to, deadline)
  gen = gen + 1
  mode = to
  open_until = deadline
  redis.call('HSET', KEYS[2], 'mode', to, 'gen', gen, 'until', string.format('%.0f', deadline))
  redis.call('DEL', KEYS[3])
  if to == 'closed' then
    since = sec
    redis.call('HSET', KEYS[2], 'since', sec)
    redis.call('DEL', KEYS[4])
  end
end

local manual = ARGV[7]
if manual ~= '' and manual ~= mode then
  enter(manual, 0)
end

local probe = ARGV[8]
if probe ~= '' and mode == 'open' and tonumber(ARGV[9]) == gen
    and redis.call('GET', KEYS[3]) == id then
  if probe == 'ok' then
    enter('closed', 0)
  elseif probe == 'fail' then
    enter('open', now + tonumber(ARGV[10]))
  else
    redis.call('PEXPIRE', KEYS[3], prober_ttl)
  end
end

local calls, failures = 0, 0
for s = sec - window + 1, sec do
  if s > since then
    local bucket = redis.call('HMGET', buckets .. s, 'calls', 'failures')
    calls = calls + tonumber(bucket[1] or '0')
    failures = failures + tonumber(bucket[2] or '0')
  end
end
local seeing = redis.call('ZCARD', KEYS[4])
local live = redis.call('ZCARD', KEYS[1])
if mode == 'closed' and calls >= tonumber(ARGV[14])
    and failures * 10000 >= tonumber(ARGV[13]) * calls then
  local needed = tonumber(ARGV[15])
  if needed == 0 then
    needed = math.ceil(live * tonumber(ARGV[16]) / 1000000)
  end
  if needed < 1 then
    needed = 1
  end
  if seeing >= needed then
    enter('open', now + tonumber(ARGV[11]))
    opened = 1
  end
end

local prober = 0
if mode == 'open' and now >= open_until then
  if redis.call('SET', KEYS[3], id, 'NX', 'PX', prober_ttl) then
    elected = 1
  end
  if redis.call('GET', KEYS[3]) == id then
    prober = 1
  end
end
return {mode, gen, open_until - now, prober, elected, opened, calls, failures, seeing, live}
";

/// The fleet breaker's sync script, hashed once.
pub(crate) fn fleet_breaker() -> Script {
    Script::new(&format!("{SYNC}{FLEET_BREAKER}"))
}

/// The fleet budget's sync: one call per instance and period, which
/// reports the instance's deposits and withdrawals, gives back what is
/// left of its last grant, and grants it a share of what the fleet may
/// still retry.
///
/// `KEYS[1]`: the live set. `ARGV`: the instance, how long an instance
/// counts as live (ms), its deposits and
/// withdrawals since its last sync, the unused part of its last grant and
/// the second that grant was made in, the window (s), the ratio in
/// millionths, the reserve (`min_per_second × window`), the prefix of the
/// bucket keys, and how
/// many of its withdrawals its local budget allowed (Redis being away):
/// those count as granted too.
///
/// The fleet's allowance is `floor(ratio × deposits) + reserve − granted`
/// over the window's per-second buckets; this instance is granted
/// `floor(allowance × (its deposits + 1) / (deposits + live instances))`,
/// counted as granted at once. Returns `{grant, second, deposits,
/// withdrawals, granted, allowance, live}`.
const FLEET_BUDGET: &str = r"
local window = tonumber(ARGV[7])
local buckets = ARGV[10]
local bucket = buckets .. sec
local ttl = (window + 2) * 1000
local deposits = tonumber(ARGV[3])
if deposits > 0 then
  redis.call('HINCRBY', bucket, 'd', deposits)
  redis.call('HINCRBY', bucket, 'd:' .. id, deposits)
end
local withdrawals = tonumber(ARGV[4])
if withdrawals > 0 then
  redis.call('HINCRBY', bucket, 'w', withdrawals)
end
local alone = tonumber(ARGV[11])
if alone > 0 then
  redis.call('HINCRBY', bucket, 'g', alone)
end
local unused = tonumber(ARGV[5])
if unused > 0 and redis.call('EXISTS', buckets .. ARGV[6]) == 1 then
  redis.call('HINCRBY', buckets .. ARGV[6], 'g', -unused)
end
local d, w, g, mine = 0, 0, 0, 0
for s = sec - window + 1, sec do
  local b = redis.call('HMGET', buckets .. s, 'd', 'w', 'g', 'd:' .. id)
  d = d + tonumber(b[1] or '0')
  w = w + tonumber(b[2] or '0')
  g = g + tonumber(b[3] or '0')
  mine = mine + tonumber(b[4] or '0')
end
local live = redis.call('ZCARD', KEYS[1])
local allowance = math.floor(d * tonumber(ARGV[8]) / 1000000) + tonumber(ARGV[9]) - g
local grant = 0
if allowance > 0 then
  grant = math.floor(allowance * (mine + 1) / (d + live))
end
if grant > 0 then
  redis.call('HINCRBY', bucket, 'g', grant)
end
redis.call('PEXPIRE', bucket, ttl)
return {grant, sec, d, w, g + grant, allowance, live}
";

/// The fleet budget's sync script, hashed once.
pub(crate) fn fleet_budget() -> Script {
    Script::new(&format!("{SYNC}{FLEET_BUDGET}"))
}
