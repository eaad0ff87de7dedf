//! Time arithmetic that cannot overflow, and duration settings checked
//! against their allowed range.

use std::time::Duration;

use portcullis_core::ConfigError;
use portcullis_core::duration;
use tokio::time::Instant;

/// How far away "never" is: a deadline the clock cannot represent
/// (`now + Duration::MAX`, say) is this far away instead, as tokio's own
/// timers do.
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);

/// `now + after`, saturated at [`FAR_FUTURE`] instead of overflowing.
pub(crate) fn deadline_after(now: Instant, after: Duration) -> Instant {
    now.checked_add(after)
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}

/// Checks that `value` is in `[min, max]`, with an error that names
/// `field` and prints every duration the way a config file writes it.
pub(crate) fn check_duration(
    field: &'static str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!(
                "must be in [{}, {}], got {}",
                duration::format(min),
                duration::format(max),
                duration::format(value)
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_deadline_too_far_for_the_clock_is_the_far_future() {
        let now = Instant::now();
        assert_eq!(
            deadline_after(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        assert_eq!(deadline_after(now, Duration::MAX), now + FAR_FUTURE);
    }

    #[test]
    fn a_duration_out_of_range_names_its_field_and_the_range() {
        let second = Duration::from_secs(1);
        let hour = Duration::from_secs(3600);
        assert!(check_duration("every", second, second, hour).is_ok());
        assert!(check_duration("every", hour, second, hour).is_ok());
        assert_eq!(
            check_duration("every", Duration::ZERO, second, hour)
                .unwrap_err()
                .to_string(),
            "every: must be in [1s, 1h], got 0s"
        );
        assert_eq!(
            check_duration(
                "every",
                Duration::from_nanos(3_600_000_000_001),
                second,
                hour
            )
            .unwrap_err()
            .to_string(),
            "every: must be in [1s, 1h], got 1h1ns"
        );
    }
}
