//! Human durations for configuration: `"30s"`, `"250ms"`, `"1m30s"`, `"2h"`.
//!
//! A duration is one or more `<number><unit>` parts, optionally separated by
//! spaces; the number may have a decimal part. Units: `ns`, `us` (or `µs`),
//! `ms`, `s`, `m`, `h`, `d`. A bare `0` is zero.
//!
//! ```
//! use portcullis_core::duration;
//! use std::time::Duration;
//!
//! assert_eq!(duration::parse("1m30s"), Ok(Duration::from_secs(90)));
//! assert_eq!(duration::parse("1.5s"), Ok(Duration::from_millis(1500)));
//! assert_eq!(duration::format(Duration::from_millis(1500)), "1s500ms");
//! assert!(duration::parse("30").is_err()); // a unit is required
//! ```

use std::fmt;
use std::time::Duration;

/// Why a duration string was not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseDurationError {
    input: String,
    reason: &'static str,
}

/// Parses a human duration.
pub fn parse(input: &str) -> Result<Duration, ParseDurationError> {
    let fail = |reason| ParseDurationError {
        input: input.to_owned(),
        reason,
    };
    let text = input.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(fail("is empty"));
    }
    if text.starts_with('-') {
        return Err(fail("cannot be negative"));
    }
    let mut total: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| fail("needs a unit (ns, us, ms, s, m, h, d)"))?;
        let (number, tail) = rest.split_at(digits);
        if number.is_empty() {
            return Err(fail("expects a number before each unit"));
        }
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == ' ')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let nanos_per_unit: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            _ => {
                return Err(fail(
                    "has an unknown unit (expected ns, us, ms, s, m, h, d)",
                ));
            }
        };
        total = total
            .checked_add(
                scale(number, nanos_per_unit).ok_or_else(|| fail("has a malformed number"))?,
            )
            .ok_or_else(|| fail("is too large"))?;
        rest = tail.trim_start();
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| fail("is too large"))?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// `number` (with an optional decimal part) times `unit` nanoseconds.
fn scale(number: &str, unit: u128) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return None;
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut nanos = whole.checked_mul(unit)?;
    let mut place = unit;
    for digit in fraction.bytes().take(18) {
        place /= 10;
        nanos = nanos.checked_add(u128::from(digit - b'0') * place)?;
    }
    Some(nanos)
}

/// Formats a duration in the form [`parse`] reads back: `"1m30s"`,
/// `"250ms"`, `"0s"`.
pub fn format(duration: Duration) -> String {
    if duration.is_zero() {
        return "0s".to_owned();
    }
    let mut out = String::new();
    let mut secs = duration.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    let mut nanos = duration.subsec_nanos();
    for (unit, size) in [("ms", 1_000_000), ("us", 1_000), ("ns", 1)] {
        if nanos >= size {
            out.push_str(&format!("{}{unit}", nanos / size));
            nanos %= size;
        }
    }
    out
}

/// Formats a measured duration for people and dashboards: like [`format()`],
/// rounded up to whole milliseconds (to whole microseconds below one
/// millisecond), so that `"2s424ms62us"` reads `"2s425ms"`. Rounded up, not
/// to the nearest: a wait read from it is never too short.
///
/// ```
/// use portcullis_core::duration;
/// use std::time::Duration;
///
/// assert_eq!(duration::format_rounded(Duration::new(2, 424_062_000)), "2s425ms");
/// assert_eq!(duration::format_rounded(Duration::from_nanos(1_500)), "2us");
/// assert_eq!(duration::format_rounded(Duration::from_secs(90)), "1m30s");
/// ```
pub fn format_rounded(duration: Duration) -> String {
    let step = if duration < Duration::from_millis(1) {
        Duration::from_micros(1)
    } else {
        Duration::from_millis(1)
    };
    let nanos = duration.as_nanos();
    let step = step.as_nanos();
    let rounded = nanos.div_ceil(step).saturating_mul(step);
    let secs = u64::try_from(rounded / 1_000_000_000).unwrap_or(u64::MAX);
    format(Duration::new(secs, (rounded % 1_000_000_000) as u32))
}

impl fmt::Display for ParseDurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "duration {:?} {}", self.input, self.reason)
    }
}

impl std::error::Error for ParseDurationError {}

/// `#[serde(with = "portcullis_core::duration::serde")]` for a `Duration`
/// field written as a human duration.
#[cfg(feature = "serde")]
pub mod serde {
    use serde::{Deserialize, Deserializer, Serializer, de};
    use std::time::Duration;

    /// Writes a duration as a human string such as `"1m30s"`.
    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format(*value))
    }

    /// Reads a human duration string.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse(&text).map_err(de::Error::custom)
    }

    /// `#[serde(with = "portcullis_core::duration::serde::rounded")]` for a
    /// measured duration: written by [`format_rounded`](super::format_rounded),
    /// read like any human duration.
    pub mod rounded {
        use serde::{Deserializer, Serializer};
        use std::time::Duration;

        /// Writes a duration as a human string rounded up to milliseconds.
        pub fn serialize<S: Serializer>(
            value: &Duration,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            serializer.serialize_str(&super::super::format_rounded(*value))
        }

        /// Reads a human duration string.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Duration, D::Error> {
            super::deserialize(deserializer)
        }

        /// The same, for an `Option<Duration>` field.
        pub mod option {
            use serde::{Deserializer, Serializer};
            use std::time::Duration;

            /// Writes `Some` as a rounded human duration and `None` as
            /// nothing.
            pub fn serialize<S: Serializer>(
                value: &Option<Duration>,
                serializer: S,
            ) -> Result<S::Ok, S::Error> {
                super::super::option::write(value, super::super::super::format_rounded, serializer)
            }

            /// Reads an optional human duration string.
            pub fn deserialize<'de, D: Deserializer<'de>>(
                deserializer: D,
            ) -> Result<Option<Duration>, D::Error> {
                super::super::option::deserialize(deserializer)
            }
        }
    }

    /// The same, for an `Option<Duration>` field.
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer, de};
        use std::time::Duration;

        /// Writes `Some` as a human duration and `None` as nothing.
        pub fn serialize<S: Serializer>(
            value: &Option<Duration>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            write(value, super::super::format, serializer)
        }

        /// Writes `Some` in the words of `format` and `None` as nothing.
        pub(super) fn write<S: Serializer>(
            value: &Option<Duration>,
            format: fn(Duration) -> String,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match value {
                Some(value) => serializer.serialize_some(&format(*value)),
                None => serializer.serialize_none(),
            }
        }

        /// Reads an optional human duration string.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Duration>, D::Error> {
            Option::<String>::deserialize(deserializer)?
                .map(|text| super::super::parse(&text).map_err(de::Error::custom))
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_units_and_sums() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("1h 2m 3s"), Ok(Duration::from_secs(3723)));
        assert_eq!(parse("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse("10µs"), Ok(Duration::from_micros(10)));
        assert_eq!(parse("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        for bad in [
            "",
            "s",
            "30",
            "1x",
            "1..5s",
            "1.2.3s",
            "-1s",
            "1 s",
            "99999999999999999999999d",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        let error = parse("5 parsecs").unwrap_err().to_string();
        assert!(error.contains("unknown unit"), "{error}");
        let error = parse("-1s").unwrap_err().to_string();
        assert!(error.contains("cannot be negative"), "{error}");
    }

    proptest! {
        #[test]
        fn format_round_trips(nanos in 0u64..u64::MAX / 4) {
            let duration = Duration::from_nanos(nanos);
            prop_assert_eq!(parse(&format(duration)), Ok(duration));
        }

        /// Whatever a config file holds, reading it as a duration gives a
        /// duration or an error, never a panic; what is read formats back
        /// to the same duration.
        #[test]
        fn any_text_parses_or_fails_cleanly(text in "\\PC{0,40}") {
            if let Ok(duration) = parse(&text) {
                prop_assert_eq!(parse(&format(duration)), Ok(duration));
            }
        }

        #[test]
        fn numbers_and_units_parse_or_fail_cleanly(
            parts in proptest::collection::vec(
                ("-?[0-9]{0,30}(\\.[0-9]{0,30})?", "(ns|us|µs|ms|s|m|h|d|x|)", " ?"),
                1..6,
            )
        ) {
            let text: String = parts.iter().map(|(n, u, sp)| format!("{n}{u}{sp}")).collect();
            if let Ok(duration) = parse(&text) {
                prop_assert_eq!(parse(&format(duration)), Ok(duration));
            }
        }
    }

    #[test]
    fn rounded_formats_round_up_and_never_overflow() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(1), "1us"),
            (Duration::from_nanos(999_999), "1ms"),
            (Duration::from_millis(1), "1ms"),
            (Duration::new(2, 424_062_000), "2s425ms"),
            (Duration::new(59, 999_000_001), "1m"),
            (Duration::from_secs(3_600), "1h"),
        ];
        for (duration, text) in cases {
            assert_eq!(format_rounded(duration), text, "{duration:?}");
        }
        // The largest duration cannot be rounded up: it stays the largest.
        assert_eq!(
            parse(&format_rounded(Duration::MAX)).unwrap().as_secs(),
            u64::MAX
        );
    }

    proptest! {
        /// A rounded duration is never shorter than the measured one, and
        /// at most one millisecond (one microsecond below 1 ms) longer.
        #[test]
        fn rounded_is_a_ceiling_within_one_step(secs in 0u64..10_000_000, nanos in 0u32..1_000_000_000) {
            let duration = Duration::new(secs, nanos);
            let rounded = parse(&format_rounded(duration)).unwrap();
            let step = if duration < Duration::from_millis(1) {
                Duration::from_micros(1)
            } else {
                Duration::from_millis(1)
            };
            prop_assert!(rounded >= duration);
            prop_assert!(rounded - duration < step);
        }
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_reads_and_writes_human_durations() {
        #[derive(::serde::Serialize, ::serde::Deserialize, PartialEq, Debug)]
        struct Config {
            #[serde(with = "crate::duration::serde")]
            wait: Duration,
            #[serde(default, with = "crate::duration::serde::option")]
            cap: Option<Duration>,
        }
        let config: Config = serde_json::from_str(r#"{"wait":"1m30s","cap":"2s"}"#).unwrap();
        assert_eq!(
            config,
            Config {
                wait: Duration::from_secs(90),
                cap: Some(Duration::from_secs(2))
            }
        );
        assert_eq!(
            serde_json::to_string(&config).unwrap(),
            r#"{"wait":"1m30s","cap":"2s"}"#
        );
        let error = serde_json::from_str::<Config>(r#"{"wait":"soon"}"#).unwrap_err();
        assert!(error.to_string().contains("\"soon\""), "{error}");
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_rounded_writes_measured_durations_to_the_millisecond() {
        #[derive(::serde::Serialize, ::serde::Deserialize, PartialEq, Debug)]
        struct Figures {
            #[serde(with = "crate::duration::serde::rounded")]
            took: Duration,
            #[serde(with = "crate::duration::serde::rounded::option")]
            retry_after: Option<Duration>,
        }
        let figures = Figures {
            took: Duration::new(2, 424_062_000),
            retry_after: Some(Duration::from_micros(1_500_001)),
        };
        let text = serde_json::to_string(&figures).unwrap();
        assert_eq!(text, r#"{"took":"2s425ms","retry_after":"1s501ms"}"#);
        let read: Figures = serde_json::from_str(&text).unwrap();
        assert_eq!(read.took, Duration::from_millis(2_425));
    }
}
