//! Retry budgets in the registry.
//!
//! A live budget takes a new ratio and floor and keeps its balance
//! ([`RetryBudget::reconfigure`]); its window (`ttl`) cannot change under
//! live traffic, so an update that changes it is refused, naming
//! `budgets.<name>.ttl`, and changes nothing. Without a live budget of
//! that name the update is simply the config of the next one made.

use std::convert::Infallible;

use portcullis_core::ConfigError;
use portcullis_core::duration;
use portcullis_retry::{BudgetConfig, BudgetSnapshot, RetryBudget};

use crate::figures::{Family, Value, counter, gauge};
use crate::hub::Hub;
use crate::kind::{Instance, InstanceKind, Source};

impl Instance for RetryBudget {
    type Config = BudgetConfig;
    type Snapshot = BudgetSnapshot;

    type Attachment = Infallible;

    const KIND: InstanceKind = InstanceKind::Budget;

    fn validate(config: &BudgetConfig) -> Result<(), ConfigError> {
        config.validate()
    }

    fn build(name: &str, config: BudgetConfig) -> Self {
        RetryBudget::named(name, config).expect("the registry validates every config it keeps")
    }

    fn name(&self) -> &str {
        RetryBudget::name(self)
    }

    fn check_update(&self, config: &BudgetConfig) -> Result<(), ConfigError> {
        let current = self.config().ttl();
        if config.ttl() != current {
            return Err(ConfigError::new(
                "ttl",
                format!(
                    "cannot change on a live budget (from {} to {}); remove it and let it be made again",
                    duration::format(current),
                    duration::format(config.ttl())
                ),
            ));
        }
        config.validate()
    }

    fn reconfigure(&self, config: BudgetConfig) -> Result<(), ConfigError> {
        RetryBudget::reconfigure(self, config)
    }

    fn snapshot(&self) -> BudgetSnapshot {
        RetryBudget::snapshot(self)
    }

    /// A budget whose balance is back to its floor holds nothing worth
    /// keeping: no deposit or withdrawal counts any more.
    fn evictable(&self) -> bool {
        let config = self.config();
        let floor = u64::from(config.min_per_second()) * config.ttl().as_secs();
        self.available() == floor
    }

    fn families() -> &'static [Family<BudgetSnapshot>] {
        &FAMILIES
    }

    fn attach(&self, _source: Source, _hub: Hub) -> Option<Infallible> {
        None
    }
}

/// A retry budget's metric families.
static FAMILIES: [Family<BudgetSnapshot>; 5] = [
    gauge(
        "portcullis_retry_budget_available_retries",
        "Whole retries the budget's balance holds now.",
        |figures, emit| emit(&[], Value::Gauge(figures.available as f64)),
    ),
    gauge(
        "portcullis_retry_budget_ratio",
        "Retries the budget allows per request.",
        |figures, emit| emit(&[], Value::Gauge(figures.ratio)),
    ),
    counter(
        "portcullis_retry_budget_deposits",
        "Requests recorded by the budget since it was made.",
        |figures, emit| emit(&[], Value::Counter(figures.deposits)),
    ),
    counter(
        "portcullis_retry_budget_withdrawals",
        "Retries taken from the budget since it was made.",
        |figures, emit| emit(&[], Value::Counter(figures.withdrawals)),
    ),
    counter(
        "portcullis_retry_budget_refused",
        "Retries the budget refused for want of balance since it was made.",
        |figures, emit| emit(&[], Value::Counter(figures.refused)),
    ),
];

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_budget_keeps_its_balance_and_refuses_a_new_window() {
        let ttl = Duration::from_secs(10);
        let budget = <RetryBudget as Instance>::build("db", BudgetConfig::new(0.5, 0, ttl));
        assert!(budget.evictable());
        for _ in 0..4 {
            budget.deposit();
        }
        assert!(!budget.evictable());
        let wider = BudgetConfig::new(1.0, 0, ttl);
        Instance::check_update(&budget, &wider).unwrap();
        Instance::reconfigure(&budget, wider).unwrap();
        assert_eq!(budget.available(), 2, "the deposits were kept");
        budget.deposit();
        assert_eq!(budget.available(), 3, "and the new ratio counts");
        let error =
            Instance::check_update(&budget, &BudgetConfig::new(1.0, 0, ttl * 2)).unwrap_err();
        assert_eq!(error.field(), "ttl");
        tokio::time::advance(ttl * 2).await;
        assert!(budget.evictable(), "nothing counts after the window");
    }
}
