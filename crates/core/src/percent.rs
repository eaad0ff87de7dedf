//! Rates in percent as people read them: two decimals.
//!
//! A rate kept as an `f32` and widened to `f64` (as JSON and Prometheus
//! do) shows its binary noise: one failure in 27 calls is
//! `3.7037036418914795`. [`round`] gives `3.7`, exact to the hundredth.
//!
//! ```
//! use portcullis_core::percent;
//!
//! assert_eq!(percent::round(100.0 / 27.0), 3.7);
//! assert_eq!(percent::round(1000.0 / 27.0), 37.04);
//! assert_eq!(percent::round(50.0), 50.0);
//! ```

/// `value` in percent, rounded to two decimals.
pub fn round(value: f32) -> f64 {
    (f64::from(value) * 100.0).round() / 100.0
}

/// `#[serde(with = "portcullis_core::percent::serde")]` for an `f32` rate
/// in percent, written with two decimals.
#[cfg(feature = "serde")]
pub mod serde {
    use serde::Serializer;

    /// Writes the rate rounded to two decimals.
    pub fn serialize<S: Serializer>(value: &f32, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(super::round(*value))
    }

    /// The same, for an `Option<f32>` rate (`None` written as nothing).
    pub mod option {
        use serde::Serializer;

        /// Writes `Some` rounded to two decimals and `None` as nothing.
        pub fn serialize<S: Serializer>(
            value: &Option<f32>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match value {
                Some(value) => serializer.serialize_some(&super::super::round(*value)),
                None => serializer.serialize_none(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Rounding moves a rate by at most half a hundredth (plus the
        /// `f32` it came from), and what it gives has two decimals at most.
        #[test]
        fn round_is_within_half_a_hundredth(value in 0.0f32..=100.0) {
            let rounded = round(value);
            prop_assert!((rounded - f64::from(value)).abs() <= 0.005 + 1e-9);
            let text = rounded.to_string();
            let decimals = text.split_once('.').map_or(0, |(_, d)| d.len());
            prop_assert!(decimals <= 2, "{}", text);
        }
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_writes_two_decimals_even_through_a_json_value() {
        #[derive(::serde::Serialize)]
        struct Figures {
            #[serde(with = "crate::percent::serde::option")]
            failure_rate: Option<f32>,
            #[serde(with = "crate::percent::serde")]
            slow_call_rate: f32,
        }
        let figures = Figures {
            failure_rate: Some(1000.0 / 27.0),
            slow_call_rate: 100.0 / 3.0,
        };
        let value = serde_json::to_value(&figures).unwrap();
        assert_eq!(
            value.to_string(),
            r#"{"failure_rate":37.04,"slow_call_rate":33.33}"#
        );
    }
}
