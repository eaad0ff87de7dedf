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

use std::fmt;
use std::sync::atomic::{AtomicU64 as StdAtomicU64, Ordering as StdOrdering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use portcullis_core::ConfigError;
use portcullis_core::clock::Clock;
use portcullis_core::duration;
use portcullis_core::sync::{AtomicBool, AtomicU64, Ordering};
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
        Ok(Self {
            shared: Arc::new(Shared {
                name: name.into(),
                core: Core::new(&config),
                config: Mutex::new(config),
                clock: Clock::new(),
                deposits: StdAtomicU64::new(0),
                withdrawals: StdAtomicU64::new(0),
                refused: StdAtomicU64::new(0),
            }),
        })
    }

    /// The budget's name (empty unless it was made [`named`](Self::named)).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Its configuration.
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

    /// Records a request: adds `ratio` of a retry to the balance.
    pub fn deposit(&self) {
        self.shared.deposits.fetch_add(1, StdOrdering::Relaxed);
        self.shared.core.deposit(self.now());
    }

    /// Takes one retry from the balance, if there is one.
    pub fn try_withdraw(&self) -> bool {
        let taken = self.shared.core.try_withdraw(self.now());
        let counter = if taken {
            &self.shared.withdrawals
        } else {
            &self.shared.refused
        };
        counter.fetch_add(1, StdOrdering::Relaxed);
        taken
    }

    /// How many whole retries the balance holds now.
    pub fn available(&self) -> u64 {
        self.shared.core.balance(self.now()) / UNIT
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
}
