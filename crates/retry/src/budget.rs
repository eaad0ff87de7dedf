//! The retry budget: retries may add at most a ratio of the recent requests,
//! plus a floor per second.
//!
//! Without a budget, a retry layer multiplies the load on a dependency that
//! is already failing by its maximum number of attempts. With one, each
//! request *deposits* `ratio` of a retry and each retry *withdraws* a whole
//! one, over a sliding window of `ttl` (in ten buckets); a reserve of
//! `min_per_second × ttl` retries keeps low-traffic clients able to retry at
//! all. This is Finagle's `RetryBudget` (and the idea behind Envoy's).
//!
//! # Exact ratios
//!
//! tower's `TpsBudget` scales the *withdrawal* by `1 / ratio` and truncates
//! it to an integer, so a ratio of 0.3 allows 33 % of retries and a ratio of
//! 0.7 allows 100 % (tower#857). Here the *deposit* is scaled instead, in
//! millionths of a retry: a request deposits `round(ratio × 10⁶)` and a
//! retry withdraws exactly 10⁶, so over a window no more than
//! `floor(requests × ratio)` retries (plus the reserve) are ever allowed,
//! for any ratio written with up to six decimals.
//!
//! # Concurrency
//!
//! A deposit is one clock read and one `fetch_add`; a withdrawal is a
//! compare-and-swap loop on the same counter, so two retries can never
//! spend the same deposit. The window keeps one cumulative counter and, per
//! bucket, a mark of the counter at the bucket's start; moving to a new
//! bucket (once per bucket span, not per call) writes the marks. A
//! withdrawal that races a bucket change may see the newer window a moment
//! early: it may be refused, never over-allowed. Checked with `loom`.
//!
//! The clock read is the coarse time of [`portcullis_core::clock`] in a
//! running runtime (one atomic load; buckets start up to about a
//! millisecond late), and tokio's clock where time is paused, so paused
//! tests see the buckets to the nanosecond.
//!
//! # gRPC `retryThrottling`
//!
//! [`RetryBudget::throttling`] makes a budget of the other kind, gRPC's
//! (gRFC A6): a balance of tokens that starts full at `max_tokens`; each
//! failed attempt takes one token (down to 0), each successful one gives
//! back `token_ratio` (up to `max_tokens`), and no retry or hedge is sent
//! while the balance is at or below `max_tokens / 2`. Tokens are counted
//! in thousandths, as A6 counts them; a retry or a hedge spends none (it is
//! its failure that costs). The same handle serves retries and hedges, so
//! one balance caps both. The outcomes come in through
//! [`RetryBudget::record`]; a windowed budget ignores them.

use std::fmt;
use std::sync::atomic::{AtomicU64 as StdAtomicU64, Ordering as StdOrdering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use portcullis_core::clock::Clock;
use portcullis_core::duration;
use portcullis_core::sync::{AtomicBool, AtomicU64, Ordering};
use portcullis_core::{ConfigError, Outcome};
use serde::{Deserialize, Serialize};

/// A retry budget: a cheap, cloneable handle to one shared balance.
///
/// Every clone, every service and every route built with it draws from the
/// same balance: share one budget between all the routes that call one
/// dependency.
///
/// ```
/// use portcullis_retry::RetryBudget;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// // 20 % of the requests, no floor.
/// let budget = RetryBudget::new(0.2, 0, Duration::from_secs(10)).unwrap();
/// for _ in 0..10 {
///     budget.deposit();
/// }
/// assert!(budget.try_withdraw());
/// assert!(budget.try_withdraw());
/// assert!(!budget.try_withdraw(), "10 requests pay for 2 retries");
/// # }
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    shared: Arc<Shared>,
}

/// A retry budget's figures at one moment, as plain data.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BudgetSnapshot {
    /// The budget's name (empty for an unnamed budget).
    pub name: String,
    /// Retries per request that the budget allows.
    pub ratio: f64,
    /// Retries per second allowed whatever the traffic.
    pub min_per_second: u32,
    /// How long a deposit counts.
    #[serde(with = "portcullis_core::duration::serde")]
    pub ttl: Duration,
    /// Whole retries the balance holds now.
    pub available: u64,
    /// Requests recorded (deposits) since the budget was made.
    pub deposits: u64,
    /// Retries taken from the balance since the budget was made.
    pub withdrawals: u64,
    /// Retries refused for want of balance since the budget was made.
    pub refused: u64,
    /// A throttling budget's tokens (gRPC `retryThrottling`); `None` for a
    /// windowed budget, whose `ratio`, `min_per_second` and `ttl` are the
    /// ones that apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttle: Option<ThrottleSnapshot>,
}

/// A throttling budget's tokens at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ThrottleSnapshot {
    /// The most tokens the balance holds (and starts with).
    pub max_tokens: u32,
    /// Tokens a success gives back.
    pub token_ratio: f64,
    /// Tokens held now, to a thousandth.
    pub tokens: f64,
    /// Whether retries and hedges are allowed now (`tokens > max_tokens / 2`).
    pub allowed: bool,
}

/// The configuration of a throttling budget, gRPC's `retryThrottling`
/// (gRFC A6): `throttle = { max_tokens = 10, token_ratio = 0.1 }`.
///
/// ```
/// use portcullis_core::Outcome;
/// use portcullis_retry::{RetryBudget, ThrottleConfig};
///
/// let budget = RetryBudget::throttling("db", ThrottleConfig::new(10, 0.1)).unwrap();
/// for _ in 0..5 {
///     budget.record(Outcome::Failure);
/// }
/// assert!(!budget.try_withdraw(), "5 tokens of 10: at the threshold, no retry");
/// budget.record(Outcome::Success);
/// assert!(budget.try_withdraw(), "5.1 tokens: above it again");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleConfig {
    max_tokens: u32,
    token_ratio: f64,
}

/// The configuration of a [`RetryBudget`].
///
/// As serde data: `budget = { ratio = 0.2, min_per_second = 10, ttl = "10s" }`
/// (every field optional, with these defaults).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetConfig {
    ratio: f64,
    min_per_second: u32,
    #[serde(with = "duration::serde")]
    ttl: Duration,
}

struct Shared {
    name: Arc<str>,
    /// The configuration as given; read by `config()` and replaced by
    /// `reconfigure()`, never on the call path (which reads `core`).
    config: Mutex<BudgetConfig>,
    core: Core,
    /// Set for a throttling budget: then `core` is not used.
    throttle: Option<(ThrottleConfig, Throttle)>,
    /// The time of deposits and withdrawals, in nanoseconds since the
    /// budget was made (the coarse time in a running runtime:
    /// [`Clock`]).
    clock: Clock,
    deposits: StdAtomicU64,
    withdrawals: StdAtomicU64,
    refused: StdAtomicU64,
}

/// The balance, as a pure state machine over atomics: time comes in as
/// nanoseconds since the budget was made.
pub(crate) struct Core {
    /// Millionths of a retry deposited per request. Like `reserve`, a
    /// parameter (changed by a reconfiguration), not part of the protocol:
    /// a plain `std` atomic even under loom.
    deposit: StdAtomicU64,
    /// Retries always available per window, in millionths.
    reserve: StdAtomicU64,
    bucket_nanos: u64,
    buckets: u64,
    /// Cumulative deposits minus withdrawals, in millionths, wrapping.
    net: AtomicU64,
    /// The bucket the marks are written up to.
    current: AtomicU64,
    rotating: AtomicBool,
    /// `net` at the start of bucket `j`, at `j % (buckets + 1)`: one more
    /// slot than the window, so that moving to the next bucket never
    /// overwrites the mark of the oldest bucket a reader may be using.
    marks: Box<[AtomicU64]>,
}

/// gRPC's token balance (gRFC A6), in thousandths of a token.
pub(crate) struct Throttle {
    tokens: AtomicU64,
    max: u64,
    ratio: u64,
}

/// A thousandth of a token is the unit of a throttling budget.
const MILLI: u64 = 1000;

/// A millionth of a retry is the unit of account.
const UNIT: u64 = 1_000_000;
/// Buckets per window.
const BUCKETS: u32 = 10;

impl RetryBudget {
    /// A budget of `ratio` retries per request (0.2: one retry for five
    /// requests) plus `min_per_second` retries per second, over a window of
    /// `ttl`.
    pub fn new(ratio: f64, min_per_second: u32, ttl: Duration) -> Result<Self, ConfigError> {
        Self::from_config(BudgetConfig::new(ratio, min_per_second, ttl))
    }

    /// A budget from a configuration, validated first.
    pub fn from_config(config: BudgetConfig) -> Result<Self, ConfigError> {
        Self::named("", config)
    }

    /// A budget named `name` (as a registry and its figures show it), from
    /// a configuration validated first.
    pub fn named(name: impl Into<Arc<str>>, config: BudgetConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::make(name.into(), config, None))
    }

    /// A throttling budget named `name`: gRPC's `retryThrottling` (see
    /// [`ThrottleConfig`]), validated first. Its outcomes come in through
    /// [`record`](Self::record); [`deposit`](Self::deposit) only counts.
    pub fn throttling(
        name: impl Into<Arc<str>>,
        config: ThrottleConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let throttle = (config, Throttle::new(&config));
        Ok(Self::make(
            name.into(),
            BudgetConfig::default(),
            Some(throttle),
        ))
    }

    fn make(
        name: Arc<str>,
        window: BudgetConfig,
        throttle: Option<(ThrottleConfig, Throttle)>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                name,
                core: Core::new(&window),
                config: Mutex::new(window),
                throttle,
                clock: Clock::new(),
                deposits: StdAtomicU64::new(0),
                withdrawals: StdAtomicU64::new(0),
                refused: StdAtomicU64::new(0),
            }),
        }
    }

    /// A throttling budget's configuration; `None` for a windowed one.
    pub fn throttle(&self) -> Option<ThrottleConfig> {
        self.shared.throttle.as_ref().map(|(config, _)| *config)
    }

    /// The budget's name (empty unless it was made [`named`](Self::named)).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Its configuration.
    ///
    /// A throttling budget has no window: this is then the default
    /// configuration, which it does not use (see [`throttle`](Self::throttle)).
    pub fn config(&self) -> BudgetConfig {
        *self
            .shared
            .config
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the ratio and the floor of this live budget, keeping its
    /// balance: what was deposited and withdrawn still counts, and the new
    /// ratio applies to the next deposit, the new floor at once.
    ///
    /// The window cannot change under live traffic: a `config` with
    /// another `ttl` is refused with an error on `ttl` (make a new budget
    /// instead), and an invalid one changes nothing.
    ///
    /// ```
    /// use portcullis_retry::{BudgetConfig, RetryBudget};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let ttl = Duration::from_secs(10);
    /// let budget = RetryBudget::named("db", BudgetConfig::new(0.5, 0, ttl)).unwrap();
    /// budget.deposit();
    /// budget.reconfigure(BudgetConfig::new(1.0, 0, ttl)).unwrap();
    /// budget.deposit();
    /// assert_eq!(budget.available(), 1, "half a retry kept, plus a whole one");
    /// let error = budget.reconfigure(BudgetConfig::new(1.0, 0, ttl * 2)).unwrap_err();
    /// assert_eq!(error.field(), "ttl");
    /// # }
    /// ```
    pub fn reconfigure(&self, config: BudgetConfig) -> Result<(), ConfigError> {
        config.validate()?;
        if self.shared.throttle.is_some() {
            return Err(ConfigError::new(
                "ratio",
                "a throttling budget has no window to reconfigure; make a new budget instead",
            ));
        }
        let mut current = self
            .shared
            .config
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if config.ttl != current.ttl {
            return Err(ConfigError::new(
                "ttl",
                format!(
                    "cannot change on a live budget (from {} to {}); make a new budget instead",
                    duration::format(current.ttl),
                    duration::format(config.ttl)
                ),
            ));
        }
        self.shared.core.set_rates(&config);
        *current = config;
        Ok(())
    }

    /// Records a request: adds `ratio` of a retry to the balance (a
    /// throttling budget only counts it).
    pub fn deposit(&self) {
        self.shared.deposits.fetch_add(1, StdOrdering::Relaxed);
        if self.shared.throttle.is_none() {
            self.shared.core.deposit(self.now());
        }
    }

    /// Records the outcome of one attempt (a first one, a retry or a
    /// hedge): a throttling budget takes a token for a failure and gives
    /// back `token_ratio` for a success; an ignored outcome, and any
    /// outcome for a windowed budget, changes nothing.
    #[inline]
    pub fn record(&self, outcome: Outcome) {
        if let Some((_, throttle)) = &self.shared.throttle {
            match outcome {
                Outcome::Success => throttle.success(),
                Outcome::Failure => throttle.failure(),
                Outcome::Ignored => {}
            }
        }
    }

    /// Takes one retry (or hedge) from the balance, if there is one. A
    /// throttling budget spends nothing: it allows one while its tokens are
    /// above half the maximum.
    pub fn try_withdraw(&self) -> bool {
        let taken = match &self.shared.throttle {
            Some((_, throttle)) => throttle.allows(),
            None => self.shared.core.try_withdraw(self.now()),
        };
        let counter = if taken {
            &self.shared.withdrawals
        } else {
            &self.shared.refused
        };
        counter.fetch_add(1, StdOrdering::Relaxed);
        taken
    }

    /// How many whole retries the balance holds now (a throttling
    /// budget: whole tokens).
    pub fn available(&self) -> u64 {
        match &self.shared.throttle {
            Some((_, throttle)) => throttle.tokens() / MILLI,
            None => self.shared.core.balance(self.now()) / UNIT,
        }
    }

    /// The budget's figures now.
    pub fn snapshot(&self) -> BudgetSnapshot {
        let shared = &*self.shared;
        let config = self.config();
        BudgetSnapshot {
            name: shared.name.to_string(),
            ratio: config.ratio,
            min_per_second: config.min_per_second,
            ttl: config.ttl,
            available: self.available(),
            deposits: shared.deposits.load(StdOrdering::Relaxed),
            withdrawals: shared.withdrawals.load(StdOrdering::Relaxed),
            refused: shared.refused.load(StdOrdering::Relaxed),
            throttle: shared
                .throttle
                .as_ref()
                .map(|(config, throttle)| ThrottleSnapshot {
                    max_tokens: config.max_tokens,
                    token_ratio: config.token_ratio,
                    tokens: throttle.tokens() as f64 / MILLI as f64,
                    allowed: throttle.allows(),
                }),
        }
    }

    fn now(&self) -> u64 {
        self.shared.clock.now()
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("name", &self.shared.name)
            .field("config", &self.config())
            .field("throttle", &self.throttle())
            .field("available", &self.available())
            .finish()
    }
}

impl Default for BudgetConfig {
    /// 20 % of the requests plus 10 retries per second, over 10 s.
    fn default() -> Self {
        Self {
            ratio: 0.2,
            min_per_second: 10,
            ttl: Duration::from_secs(10),
        }
    }
}

impl BudgetConfig {
    /// `ratio` retries per request plus `min_per_second` per second, over
    /// `ttl`.
    pub const fn new(ratio: f64, min_per_second: u32, ttl: Duration) -> Self {
        Self {
            ratio,
            min_per_second,
            ttl,
        }
    }

    /// Retries per request that the budget allows (0.2: 20 %).
    pub fn ratio(&self) -> f64 {
        self.ratio
    }

    /// Retries per second allowed whatever the traffic.
    pub fn min_per_second(&self) -> u32 {
        self.min_per_second
    }

    /// How long a deposit (and a withdrawal) counts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Checks every field; the error names it and the allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::config::in_range_f64("ratio", self.ratio, 0.0, 1000.0)?;
        if self.min_per_second > 1_000_000 {
            return Err(ConfigError::new(
                "min_per_second",
                format!("must be in [0, 1000000], got {}", self.min_per_second),
            ));
        }
        if self.ttl < Duration::from_secs(1) || self.ttl > Duration::from_secs(3600) {
            return Err(ConfigError::new(
                "ttl",
                format!("must be in [1s, 1h], got {}", duration::format(self.ttl)),
            ));
        }
        Ok(())
    }
}

impl ThrottleConfig {
    /// A balance of `max_tokens` (at most 1000, as in gRPC) of which a
    /// success gives back `token_ratio` (counted to a thousandth).
    pub const fn new(max_tokens: u32, token_ratio: f64) -> Self {
        Self {
            max_tokens,
            token_ratio,
        }
    }

    /// The most tokens the balance holds, and starts with.
    pub fn max_tokens(&self) -> u32 {
        self.max_tokens
    }

    /// Tokens a success gives back.
    pub fn token_ratio(&self) -> f64 {
        self.token_ratio
    }

    /// Checks every field; the error names it and the allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=1000).contains(&self.max_tokens) {
            return Err(ConfigError::new(
                "max_tokens",
                format!("must be in [1, 1000], got {}", self.max_tokens),
            ));
        }
        crate::config::in_range_f64("token_ratio", self.token_ratio, 0.001, 1000.0)
    }
}

impl Throttle {
    pub(crate) fn new(config: &ThrottleConfig) -> Self {
        Self::from_parts(
            u64::from(config.max_tokens) * MILLI,
            (config.token_ratio * MILLI as f64).round() as u64,
        )
    }

    /// `max` and `ratio` in thousandths of a token; the balance starts full.
    pub(crate) fn from_parts(max: u64, ratio: u64) -> Self {
        Self {
            tokens: AtomicU64::new(max),
            max,
            ratio,
        }
    }

    /// The balance, in thousandths of a token.
    pub(crate) fn tokens(&self) -> u64 {
        self.tokens.load(Ordering::Acquire)
    }

    /// Whether a retry or a hedge may be sent: strictly above half the
    /// maximum.
    pub(crate) fn allows(&self) -> bool {
        self.tokens() > self.max / 2
    }

    pub(crate) fn success(&self) {
        self.update(|tokens| (tokens + self.ratio).min(self.max));
    }

    pub(crate) fn failure(&self) {
        self.update(|tokens| tokens.saturating_sub(MILLI));
    }

    /// Applies `change` atomically; a balance that `change` leaves as it is
    /// (full on a success, empty on a failure) is not written.
    fn update(&self, change: impl Fn(u64) -> u64) {
        let mut tokens = self.tokens.load(Ordering::Acquire);
        loop {
            let next = change(tokens);
            if next == tokens {
                return;
            }
            match self.tokens.compare_exchange_weak(
                tokens,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => tokens = actual,
            }
        }
    }
}

impl Core {
    pub(crate) fn new(config: &BudgetConfig) -> Self {
        let ttl_nanos = u64::try_from(config.ttl.as_nanos()).unwrap_or(u64::MAX);
        let buckets = u64::from(BUCKETS);
        let (deposit, reserve) = Self::rates(config);
        Self::from_parts(deposit, reserve, (ttl_nanos / buckets).max(1), buckets)
    }

    /// The deposit per request and the reserve, in millionths of a retry.
    fn rates(config: &BudgetConfig) -> (u64, u64) {
        // Reserve: min_per_second × ttl retries, in millionths.
        let reserve =
            (u128::from(config.min_per_second) * config.ttl.as_millis() * u128::from(UNIT)) / 1000;
        (
            (config.ratio * UNIT as f64).round() as u64,
            u64::try_from(reserve).unwrap_or(u64::MAX / 4),
        )
    }

    /// Takes the ratio and the floor of `config` (same window).
    fn set_rates(&self, config: &BudgetConfig) {
        let (deposit, reserve) = Self::rates(config);
        self.deposit.store(deposit, StdOrdering::Relaxed);
        self.reserve.store(reserve, StdOrdering::Relaxed);
    }

    pub(crate) fn from_parts(deposit: u64, reserve: u64, bucket_nanos: u64, buckets: u64) -> Self {
        Self {
            deposit: StdAtomicU64::new(deposit),
            reserve: StdAtomicU64::new(reserve),
            bucket_nanos,
            buckets,
            net: AtomicU64::new(0),
            current: AtomicU64::new(0),
            rotating: AtomicBool::new(false),
            marks: (0..=buckets).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub(crate) fn deposit(&self, now: u64) {
        self.rotate(now);
        let deposit = self.deposit.load(StdOrdering::Relaxed);
        if deposit > 0 {
            self.net.fetch_add(deposit, Ordering::AcqRel);
        }
    }

    pub(crate) fn try_withdraw(&self, now: u64) -> bool {
        self.rotate(now);
        let mut net = self.net.load(Ordering::Acquire);
        loop {
            if self.balance_at(net) < UNIT {
                return false;
            }
            match self.net.compare_exchange_weak(
                net,
                net.wrapping_sub(UNIT),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => net = actual,
            }
        }
    }

    /// The balance now, in millionths of a retry.
    pub(crate) fn balance(&self, now: u64) -> u64 {
        self.rotate(now);
        self.balance_at(self.net.load(Ordering::Acquire))
    }

    /// The reserve plus what the window holds, given the counter `net`.
    fn balance_at(&self, net: u64) -> u64 {
        let current = self.current.load(Ordering::Acquire);
        let mark = match (current + 1).checked_sub(self.buckets) {
            // The window reaches back before the first bucket: everything counts.
            None => 0,
            Some(oldest) => self.mark(oldest).load(Ordering::Acquire),
        };
        let in_window = net.wrapping_sub(mark) as i64;
        (self.reserve.load(StdOrdering::Relaxed) as i64)
            .saturating_add(in_window)
            .max(0)
            .unsigned_abs()
    }

    fn mark(&self, bucket: u64) -> &AtomicU64 {
        &self.marks[(bucket % (self.buckets + 1)) as usize]
    }

    /// Brings the marks up to the bucket of `now`. Cheap when nothing is to
    /// do (one load); one caller at a time writes, the others go on with
    /// the marks as they are.
    fn rotate(&self, now: u64) {
        let bucket = now / self.bucket_nanos;
        if bucket <= self.current.load(Ordering::Acquire) {
            return;
        }
        if self.rotating.swap(true, Ordering::Acquire) {
            return;
        }
        let current = self.current.load(Ordering::Acquire);
        if bucket > current {
            let net = self.net.load(Ordering::Acquire);
            let from = (current + 1).max(bucket.saturating_sub(self.buckets));
            for j in from..=bucket {
                self.mark(j).store(net, Ordering::Release);
            }
            self.current.store(bucket, Ordering::Release);
        }
        self.rotating.store(false, Ordering::Release);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn core(ratio: f64, min_per_second: u32) -> Core {
        Core::new(&BudgetConfig::new(
            ratio,
            min_per_second,
            Duration::from_secs(10),
        ))
    }

    fn retries_after(core: &Core, requests: u64, now: u64) -> u64 {
        for _ in 0..requests {
            core.deposit(now);
        }
        let mut retries = 0;
        while core.try_withdraw(now) {
            retries += 1;
        }
        retries
    }

    #[test]
    fn fractional_ratios_are_exact_unlike_tower_857() {
        // tower's TpsBudget allows 33 of 100 for 0.3 and 100 of 100 for 0.7.
        for (ratio, expected) in [
            (0.2, 20),
            (0.3, 30),
            (0.7, 70),
            (0.05, 5),
            (1.0, 100),
            (0.33, 33),
        ] {
            assert_eq!(retries_after(&core(ratio, 0), 100, 0), expected, "{ratio}");
        }
        assert_eq!(
            retries_after(&core(0.2, 0), 4, 0),
            0,
            "4 requests pay for no retry"
        );
        assert_eq!(retries_after(&core(0.0, 0), 1000, 0), 0);
    }

    #[test]
    fn the_floor_is_per_second_over_the_ttl() {
        // 2 per second over 10 s: 20 retries with no traffic at all.
        assert_eq!(retries_after(&core(0.2, 2), 0, 0), 20);
        assert_eq!(retries_after(&core(0.2, 2), 50, 0), 30);
    }

    #[test]
    fn deposits_and_withdrawals_expire_after_the_ttl() {
        let core = core(0.5, 0);
        for _ in 0..10 {
            core.deposit(0);
        }
        assert!(core.try_withdraw(SEC));
        assert_eq!(core.balance(SEC) / UNIT, 4);
        // Still in the window at 9.9 s; gone once its bucket leaves it.
        assert_eq!(core.balance(9 * SEC + SEC / 2) / UNIT, 4);
        assert_eq!(core.balance(10 * SEC), 0, "the deposits of bucket 0 left");
        assert!(!core.try_withdraw(10 * SEC));
        // The withdrawal at 1 s leaves at 11 s: the balance never goes
        // negative in between, and new deposits count at once.
        for _ in 0..4 {
            core.deposit(10 * SEC);
        }
        assert_eq!(core.balance(10 * SEC) / UNIT, 1);
        assert_eq!(core.balance(11 * SEC) / UNIT, 2);
    }

    #[test]
    fn a_long_idle_gap_forgets_everything() {
        let core = core(1.0, 0);
        for _ in 0..5 {
            core.deposit(0);
        }
        assert_eq!(core.balance(3600 * SEC), 0);
        core.deposit(3600 * SEC);
        assert_eq!(core.balance(3600 * SEC) / UNIT, 1);
    }

    #[test]
    fn validation_names_the_field() {
        let field = |c: BudgetConfig| c.validate().unwrap_err().to_string();
        assert_eq!(
            field(BudgetConfig::new(-0.1, 0, Duration::from_secs(10))),
            "ratio: must be in [0, 1000], got -0.1"
        );
        assert_eq!(
            field(BudgetConfig::new(0.2, 0, Duration::from_millis(10))),
            "ttl: must be in [1s, 1h], got 10ms"
        );
        BudgetConfig::default().validate().unwrap();
        let config: BudgetConfig = toml::from_str("ratio = 0.1\nttl = \"30s\"").unwrap();
        assert_eq!(config, BudgetConfig::new(0.1, 10, Duration::from_secs(30)));
    }

    /// gRFC A6: tokens start at `max_tokens`; a failure takes 1 (not below
    /// 0), a success gives back `token_ratio` (not above the maximum); no
    /// retry while the tokens are at or below `max_tokens / 2`.
    #[test]
    fn throttling_follows_grpc_a6() {
        let budget = RetryBudget::throttling("t", ThrottleConfig::new(10, 0.1)).unwrap();
        let tokens = |b: &RetryBudget| b.snapshot().throttle.unwrap().tokens;
        assert_eq!(tokens(&budget), 10.0, "starts full");
        budget.record(Outcome::Success);
        assert_eq!(tokens(&budget), 10.0, "never above the maximum");
        for failures in 1..=4 {
            budget.record(Outcome::Failure);
            assert_eq!(tokens(&budget), 10.0 - f64::from(failures));
            assert!(budget.try_withdraw(), "{failures} failures: above half");
        }
        budget.record(Outcome::Failure);
        assert_eq!(tokens(&budget), 5.0);
        assert!(!budget.try_withdraw(), "at half the maximum: throttled");
        budget.record(Outcome::Ignored);
        assert_eq!(tokens(&budget), 5.0, "an ignored outcome changes nothing");
        budget.record(Outcome::Success);
        assert_eq!(tokens(&budget), 5.1, "a success gives back 0.1");
        assert!(budget.try_withdraw(), "above half again");
        assert!(budget.try_withdraw(), "a retry spends no token");
        for _ in 0..20 {
            budget.record(Outcome::Failure);
        }
        assert_eq!(tokens(&budget), 0.0, "never below 0");
        for _ in 0..51 {
            budget.record(Outcome::Success);
        }
        assert_eq!(tokens(&budget), 5.1, "51 successes of 0.1, exactly");
        budget.deposit();
        assert_eq!(tokens(&budget), 5.1, "a request alone changes nothing");
        let snapshot = budget.snapshot();
        assert_eq!((snapshot.withdrawals, snapshot.refused), (6, 1));
        assert_eq!(budget.available(), 5);
        assert_eq!(budget.throttle(), Some(ThrottleConfig::new(10, 0.1)));
    }

    #[test]
    fn a_windowed_budget_ignores_outcomes_and_throttle_validates() {
        let budget = RetryBudget::new(0.0, 0, Duration::from_secs(10)).unwrap();
        budget.record(Outcome::Success);
        assert!(!budget.try_withdraw());
        assert_eq!(budget.snapshot().throttle, None);
        let error = |c: ThrottleConfig| c.validate().unwrap_err().to_string();
        assert_eq!(
            error(ThrottleConfig::new(0, 0.1)),
            "max_tokens: must be in [1, 1000], got 0"
        );
        assert_eq!(
            error(ThrottleConfig::new(10, 0.0)),
            "token_ratio: must be in [0.001, 1000], got 0"
        );
        let config: ThrottleConfig = toml::from_str("max_tokens = 100\ntoken_ratio = 0.5").unwrap();
        assert_eq!(config, ThrottleConfig::new(100, 0.5));
        let throttling = RetryBudget::throttling("t", config).unwrap();
        let refused = throttling.reconfigure(BudgetConfig::default()).unwrap_err();
        assert_eq!(refused.field(), "ratio");
    }

    #[tokio::test(start_paused = true)]
    async fn the_handle_reads_paused_time() {
        let budget = RetryBudget::new(1.0, 0, Duration::from_secs(1)).unwrap();
        budget.deposit();
        assert_eq!(budget.available(), 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(budget.available(), 0);
        assert!(!budget.try_withdraw());
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// Two retries race for the one retry that the deposits pay for:
    /// exactly one gets it, whatever the interleaving.
    #[test]
    fn one_deposit_pays_for_one_retry() {
        loom::model(|| {
            let core = Arc::new(Core::from_parts(UNIT / 2, 0, 10, 2));
            core.deposit(0);
            core.deposit(0);
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let core = core.clone();
                    thread::spawn(move || core.try_withdraw(0))
                })
                .collect();
            let won = handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|&won| won)
                .count();
            assert_eq!(won, 1);
            assert_eq!(core.balance(0), 0);
        });
    }

    /// A deposit that moves the window to a new bucket races a retry: the
    /// retry may or may not see the new deposit, but it never spends more
    /// than was deposited, and the deposit is never lost.
    #[test]
    fn a_bucket_change_never_over_allows() {
        loom::model(|| {
            let core = Arc::new(Core::from_parts(UNIT, 0, 10, 2));
            core.deposit(0);
            let depositor = {
                let core = core.clone();
                thread::spawn(move || core.deposit(10))
            };
            let first = core.try_withdraw(10);
            depositor.join().unwrap();
            let second = core.try_withdraw(10);
            let third = core.try_withdraw(10);
            assert!(first, "the deposit of bucket 0 is still in the window");
            assert!(second, "the racing deposit is counted once it is made");
            assert!(!third, "two deposits, two retries");
        });
    }

    /// Two failures and a success race on a throttling balance: every one
    /// of them counts, whatever the interleaving, and the bounds hold.
    #[test]
    fn throttle_updates_are_never_lost() {
        loom::model(|| {
            // 2 tokens, a success gives back half of one; one token spent.
            let throttle = Arc::new(Throttle::from_parts(2 * MILLI, MILLI / 2));
            throttle.failure();
            let handles: Vec<_> = [false, false, true]
                .into_iter()
                .map(|success| {
                    let throttle = throttle.clone();
                    thread::spawn(move || {
                        if success {
                            throttle.success();
                        } else {
                            throttle.failure();
                        }
                    })
                })
                .collect();
            for handle in handles {
                handle.join().unwrap();
            }
            // 1 token, two failures and a success: 0 or 0.5, depending on
            // whether the success came before the floor was reached.
            let tokens = throttle.tokens();
            assert!(tokens == 0 || tokens == MILLI / 2, "{tokens}");
            assert!(!throttle.allows());
        });
    }
}
