//! Configuration errors shared by every Portcullis layer.

use std::borrow::Cow;
use std::fmt;

/// A configuration value that is out of range or inconsistent.
///
/// The error names the field (as a dotted path, e.g.
/// `profiles.payments.breaker.failure_rate_threshold`) and says what is
/// allowed, so a user can fix a config file without reading the source:
///
/// ```
/// use portcullis_core::ConfigError;
///
/// let error = ConfigError::new("failure_rate_threshold", "must be in (0, 100], got 150");
/// let error = error.within("breaker").within("profiles.payments");
/// assert_eq!(error.field(), "profiles.payments.breaker.failure_rate_threshold");
/// assert_eq!(
///     error.to_string(),
///     "profiles.payments.breaker.failure_rate_threshold: must be in (0, 100], got 150"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConfigError {
    field: Cow<'static, str>,
    message: String,
}

impl ConfigError {
    /// An error about `field` with a message that says what is allowed.
    pub fn new(field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The dotted path of the field that is wrong.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with it and what is allowed.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error, with its field placed under `prefix`.
    #[must_use]
    pub fn within(self, prefix: &str) -> Self {
        Self {
            field: Cow::Owned(format!("{prefix}.{}", self.field)),
            message: self.message,
        }
    }
}

/// Checks that `value` is in `[min, max]`; the error names `field` and the
/// range the way every Portcullis config does (`must be in [1, 100], got 0`).
///
/// ```
/// use portcullis_core::config::check_range;
///
/// assert!(check_range("max_attempts", 3, 1, 100).is_ok());
/// let error = check_range("max_attempts", 0, 1, 100).unwrap_err();
/// assert_eq!(error.to_string(), "max_attempts: must be in [1, 100], got 0");
/// ```
pub fn check_range<T>(field: &'static str, value: T, min: T, max: T) -> Result<(), ConfigError>
where
    T: PartialOrd + fmt::Display,
{
    if min <= value && value <= max {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("must be in [{min}, {max}], got {value}"),
        ))
    }
}

/// A serde error message as a config file's author would want to read it:
/// no Rust type names (`expected u32` is "expected a whole number, 0 or
/// more"), and an unknown field names the nearest known one.
///
/// ```
/// use portcullis_core::config::plain_serde_message;
///
/// assert_eq!(
///     plain_serde_message("invalid value: integer `-3`, expected u32"),
///     "invalid value: integer `-3`, expected a whole number, 0 or more"
/// );
/// assert_eq!(
///     plain_serde_message("unknown field `minimum_callz`, expected one of `minimum_calls`, `wait_in_open`"),
///     "unknown field `minimum_callz` (did you mean `minimum_calls`?), expected one of `minimum_calls`, `wait_in_open`"
/// );
/// ```
pub fn plain_serde_message(message: &str) -> String {
    let mut plain = suggest(message).unwrap_or_else(|| message.to_owned());
    for (rust, words) in [
        ("u8", "a whole number, 0 or more"),
        ("u16", "a whole number, 0 or more"),
        ("u32", "a whole number, 0 or more"),
        ("u64", "a whole number, 0 or more"),
        ("usize", "a whole number, 0 or more"),
        ("i8", "a whole number"),
        ("i16", "a whole number"),
        ("i32", "a whole number"),
        ("i64", "a whole number"),
        ("isize", "a whole number"),
        ("f32", "a number"),
        ("f64", "a number"),
        ("a boolean", "true or false"),
        ("bool", "true or false"),
    ] {
        let expected = format!("expected {rust}");
        if let Some(at) = plain.find(&expected)
            && !plain[at + expected.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
        {
            plain.replace_range(at..at + expected.len(), &format!("expected {words}"));
        }
    }
    for shape in [
        "expected struct ",
        "expected internally tagged enum ",
        "expected enum ",
    ] {
        if let Some(at) = plain.find(shape) {
            let name_end = plain[at + shape.len()..]
                .find(|c: char| !c.is_alphanumeric() && c != '_')
                .map_or(plain.len(), |end| at + shape.len() + end);
            let words = if shape == "expected struct " {
                "expected a table of fields"
            } else {
                "expected one of the names this field takes"
            };
            plain.replace_range(at..name_end, words);
        }
    }
    plain
}

/// "unknown field `x`, expected ..." with the nearest expected name, if
/// one is near enough to be a typo.
fn suggest(message: &str) -> Option<String> {
    for prefix in ["unknown field `", "unknown variant `"] {
        let Some(rest) = message.strip_prefix(prefix) else {
            continue;
        };
        let (unknown, tail) = rest.split_once('`')?;
        let nearest = nearest(unknown, tail.split('`').skip(1).step_by(2))?;
        return Some(format!(
            "{prefix}{unknown}` (did you mean `{nearest}`?){tail}"
        ));
    }
    None
}

/// The name among `known` nearest to `unknown`, if it is near enough to be
/// a typo of it (an edit distance of at most a third of its length, 1 to
/// 3), for a "did you mean" in an error.
///
/// ```
/// use portcullis_core::config::nearest;
///
/// let layers = ["rate_limit", "timeout", "breaker", "bulkhead"];
/// assert_eq!(nearest("braker", layers), Some("breaker"));
/// assert_eq!(nearest("cache", layers), None);
/// ```
pub fn nearest<'a>(unknown: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let (d, name) = known
        .into_iter()
        .map(|name| (distance(unknown, name), name))
        .min_by_key(|(d, _)| *d)?;
    (d <= (unknown.chars().count() / 3).clamp(1, 3)).then_some(name)
}

/// The edit distance between `a` and `b`, a swap of two neighbours
/// counting as one edit (`brust` is one from `burst`): the optimal string
/// alignment distance.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0; (a.len() + 1) * width];
    for i in 0..=a.len() {
        d[i * width] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(width) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_get_the_nearest_name_and_others_do_not() {
        let unknown = |field: &str| {
            plain_serde_message(&format!(
                "unknown field `{field}`, expected one of `rate`, `period`, `burst`, `max_wait`"
            ))
        };
        assert!(unknown("brust").contains("(did you mean `burst`?)"));
        assert!(unknown("max_wiat").contains("(did you mean `max_wait`?)"));
        assert!(!unknown("colour").contains("did you mean"), "nothing near");
        let two = plain_serde_message("unknown variant `cuont`, expected `count` or `time`");
        assert_eq!(
            two,
            "unknown variant `cuont` (did you mean `count`?), expected `count` or `time`"
        );
    }

    #[test]
    fn rust_type_names_become_words() {
        assert_eq!(
            plain_serde_message("invalid type: string \"ten\", expected f64"),
            "invalid type: string \"ten\", expected a number"
        );
        assert_eq!(
            plain_serde_message("invalid type: integer `1`, expected a boolean"),
            "invalid type: integer `1`, expected true or false"
        );
        assert_eq!(
            plain_serde_message("invalid type: string \"x\", expected struct BreakerConfig"),
            "invalid type: string \"x\", expected a table of fields"
        );
        assert_eq!(
            plain_serde_message(
                "invalid type: string \"count\", expected internally tagged enum SlidingWindow"
            ),
            "invalid type: string \"count\", expected one of the names this field takes"
        );
        // Only whole type names: `u32x` is not `u32`.
        assert_eq!(plain_serde_message("expected u32x"), "expected u32x");
        assert_eq!(
            plain_serde_message("must be in [1, 100], got 0"),
            "must be in [1, 100], got 0"
        );
    }

    #[test]
    fn distances() {
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("burst", "burst"), 0);
        assert_eq!(distance("brust", "burst"), 1, "a swap is one edit");
    }
}
