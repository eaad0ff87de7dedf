//! The registry's figures as metric families, declared once per kind and
//! read by both backends: `GET /metrics` (through `prometheus-client`,
//! [`PrometheusCollector`](crate::PrometheusCollector)) and the `metrics`
//! crate's publisher, so both speak the same names.
//!
//! Each kind lists its families beside its [`Instance`] impl
//! ([`Instance::families`]); a family is a name, a help text, a type and a
//! function from an instance's snapshot to its series. The instance's own
//! atomics are the metric: they are updated in place on the call path, and
//! a scrape reads them through the snapshot, so no call pays for a second
//! copy of its counts.
//!
//! Names follow Resilience4j's (`resilience4j_circuitbreaker_state` becomes
//! `portcullis_circuitbreaker_state`, `resilience4j_bulkhead_available_concurrent_calls`
//! becomes `portcullis_bulkhead_available_concurrent_calls`,
//! `resilience4j_ratelimiter_available_permissions` becomes
//! `portcullis_ratelimiter_available_permissions`); retry budgets, which
//! Resilience4j does not have, are `portcullis_retry_budget_*`, and
//! adaptive concurrency limiters `portcullis_concurrency_limiter_*` (apart
//! from the `portcullis_limit_*` that `portcullis-limit`'s own `metrics`
//! feature reports). Every
//! instance's series has the labels `name` and, for a keyed instance,
//! `key`. Counters only go up: none is cleared by a reset.

use std::fmt;

use crate::kind::Instance;
use crate::registry::Registry;

/// A family's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MetricKind {
    /// Goes up and down.
    Gauge,
    /// Only goes up; its series are named with `_total`.
    Counter,
    /// Observations counted in buckets.
    Histogram,
}

/// A metric's name (without `_total`), help and type.
#[derive(Clone, Copy, Debug)]
#[allow(unreachable_pub)] // named by the sealed `Instance` trait
pub struct Meta {
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
    pub(crate) kind: MetricKind,
}

/// A series' value.
#[derive(Clone, Copy, Debug, PartialEq)]
#[allow(unreachable_pub)] // named by the sealed `Instance` trait
pub enum Value<'a> {
    /// A gauge's value.
    Gauge(f64),
    /// A counter's value.
    Counter(u64),
    /// A histogram: the sum and count of the observations and, per bucket,
    /// its upper bound and the observations in it (not cumulative; the
    /// last bound is `+Inf`).
    Histogram {
        /// The sum of the observations.
        sum: f64,
        /// How many observations.
        count: u64,
        /// `(upper bound, count)` per bucket.
        buckets: &'a [(f64, u64)],
    },
}

/// Where a family's series of one instance go: the labels beyond `name`
/// and `key`, and the value.
#[allow(unreachable_pub)] // named by the sealed `Instance` trait
pub type Emit<'e> = dyn FnMut(&[(&'static str, &str)], Value<'_>) + 'e;

/// A metric family of a kind: its metadata and its series for one
/// instance's snapshot (none, for a figure the instance does not have yet).
#[allow(unreachable_pub)] // named by the sealed `Instance` trait
pub struct Family<S> {
    pub(crate) meta: Meta,
    pub(crate) samples: fn(&S, &mut Emit<'_>),
}

impl<S> fmt::Debug for Family<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.meta, f)
    }
}

pub(crate) const fn gauge<S>(
    name: &'static str,
    help: &'static str,
    samples: fn(&S, &mut Emit<'_>),
) -> Family<S> {
    family(name, help, MetricKind::Gauge, samples)
}

pub(crate) const fn counter<S>(
    name: &'static str,
    help: &'static str,
    samples: fn(&S, &mut Emit<'_>),
) -> Family<S> {
    family(name, help, MetricKind::Counter, samples)
}

pub(crate) const fn histogram<S>(
    name: &'static str,
    help: &'static str,
    samples: fn(&S, &mut Emit<'_>),
) -> Family<S> {
    family(name, help, MetricKind::Histogram, samples)
}

const fn family<S>(
    name: &'static str,
    help: &'static str,
    kind: MetricKind,
    samples: fn(&S, &mut Emit<'_>),
) -> Family<S> {
    Family {
        meta: Meta { name, help, kind },
        samples,
    }
}

/// The figures of one kind's instances at one moment, kind-erased.
pub(crate) trait Taken {
    /// The kind's families.
    fn families(&self) -> Vec<Meta>;
    /// The series of family `index` of every instance, sorted by name then
    /// key, with the `name` and `key` labels first.
    fn samples(&self, index: usize, emit: &mut dyn FnMut(&Labels<'_>, Value<'_>));
}

/// A series' labels: `name` (and `key`), then the family's own.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Labels<'a> {
    pub(crate) instance: &'a [(&'static str, &'a str)],
    pub(crate) extra: &'a [(&'static str, &'a str)],
}

impl Labels<'_> {
    /// Every label, `name` and `key` first.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> + '_ {
        self.instance.iter().chain(self.extra).copied()
    }
}

/// Snapshots of every instance of kind `K`, with their names and keys.
pub(crate) struct TakenOf<K: Instance> {
    pub(crate) entries: Vec<(String, Option<String>, K::Snapshot)>,
}

impl<K: Instance> Taken for TakenOf<K> {
    fn families(&self) -> Vec<Meta> {
        K::families().iter().map(|family| family.meta).collect()
    }

    fn samples(&self, index: usize, emit: &mut dyn FnMut(&Labels<'_>, Value<'_>)) {
        let family = &K::families()[index];
        for (name, key, snapshot) in &self.entries {
            let with_key;
            let instance: &[(&'static str, &str)] = match key {
                Some(key) => {
                    with_key = [("name", name.as_str()), ("key", key.as_str())];
                    &with_key
                }
                None => &[("name", name.as_str())][..],
            };
            (family.samples)(snapshot, &mut |extra, value| {
                emit(&Labels { instance, extra }, value);
            });
        }
    }
}

/// The registry's own families.
pub(crate) const EVENT_SUBSCRIBERS: Meta = Meta {
    name: "portcullis_registry_event_subscribers",
    help: "Subscribers to the registry's events, including GET /events clients.",
    kind: MetricKind::Gauge,
};
pub(crate) const EVENT_DROPPED: Meta = Meta {
    name: "portcullis_registry_event_subscribers_dropped",
    help: "Event subscribers dropped for falling behind.",
    kind: MetricKind::Counter,
};

/// The series of one family: call it with what to do with each.
pub(crate) type Series<'a> = dyn Fn(&mut dyn FnMut(&Labels<'_>, Value<'_>)) + 'a;

/// Reads every family of `registry`, kind by kind: `each` is called once
/// per family with its metadata and its series, which it reads by calling
/// them.
pub(crate) fn visit(
    registry: &Registry,
    mut each: impl FnMut(&Meta, &Series<'_>) -> fmt::Result,
) -> fmt::Result {
    for store in registry.stores().all() {
        let taken = store.take();
        for (index, meta) in taken.families().iter().enumerate() {
            each(meta, &|sample| taken.samples(index, sample))?;
        }
    }
    let stats = registry.event_stats();
    let none = Labels {
        instance: &[],
        extra: &[],
    };
    each(&EVENT_SUBSCRIBERS, &|sample| {
        sample(&none, Value::Gauge(stats.subscribers as f64));
    })?;
    each(&EVENT_DROPPED, &|sample| {
        sample(&none, Value::Counter(stats.dropped));
    })
}

/// A rate (0 to 1 or a percentage) as its series, absent when the
/// instance has too few calls to tell.
pub(crate) fn optional(value: Option<f64>, emit: &mut Emit<'_>) {
    if let Some(value) = value {
        emit(&[], Value::Gauge(value));
    }
}
