//! The GCRA in Lua: one round trip decides any number of calls of one key.

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
