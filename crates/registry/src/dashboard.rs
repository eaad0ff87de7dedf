//! The dashboard: one self-contained HTML page (inline CSS and JavaScript,
//! nothing fetched from elsewhere) served at `GET /`.
//!
//! The page lists every breaker with its state as a colour, how long it has
//! been in it, its rates and counts, and a minute of history as sparklines:
//! the failure rate, the calls and the rejections per second (differences
//! of the cumulative `counters` between two polls). It lists every bulkhead
//! with its calls in flight (of the most allowed), queued and rejected,
//! every rate limiter with the calls it would admit now (of its burst), its
//! limit and its rejections, and every retry budget with its balance,
//! ratio, retries and refusals. When `health/routes` is served, a table
//! gives each route's requests per second (with a sparkline), its p50 and
//! p99 latency over the last poll interval (from the differences of its
//! histogram's buckets, interpolated inside a bucket as Prometheus's
//! `histogram_quantile` does; the route's own cumulative figures when the
//! interval saw no call), and its timeouts, fallbacks (by cause, in the
//! cell's title) and retries; a 404 there hides the table.
//!
//! It re-fetches `health/breakers`, `health/bulkheads`,
//! `health/ratelimiters`, `health/budgets` and `health/routes` every second
//! and after every event. The history lives in the page only: one sample a
//! second at most, 60 of them, so the server keeps none (an instance's
//! memory does not grow with it). It subscribes to `events` with an
//! `EventSource`, applies each transition at once, and while the stream is
//! down (or when it opens again) reads what it missed from
//! `events/recent`. Its URLs are relative to the page, so it works wherever
//! the service is mounted.
//!
//! The snapshot does not say when a breaker entered its state, so the time
//! in state is counted from the last transition (or `reset`, or `added`)
//! event the page has seen for it; with none, from the first poll that
//! showed the state, written `≥` and explained in a tooltip. The event log
//! folds consecutive events of the same kind for the same instance into one
//! line with a `×N` count and the time range (rejections add up their
//! counts), colours transitions by the state entered, and filters by text
//! and kind. Every time is written on a 24-hour clock with the offset from
//! UTC (`14:03:07 UTC+1`); the time zone's name is in the tooltip. Until
//! the first answer it says it is loading; that nothing is registered, only
//! when an answer says so.
//!
//! Each breaker is an `<article class="breaker">` with `data-name`,
//! `data-key`, `data-state` (`CLOSED`, `OPEN`, ...), `data-calls` and
//! `data-rejected` (the cumulative counts) and `data-since` (milliseconds
//! since the epoch) attributes; its `<p class="since">` has `data-from`
//! (`event` or `page`), and each sparkline is an `<svg>` with
//! `data-series` (`failure`, `calls`, `rejections`), `data-points`,
//! `data-last` and `data-max`. The event log is `<ol id="events">`, one
//! `<li data-type="..." data-count="N">` per run of events (`data-state`
//! for a transition: the state entered). Each bulkhead is a `<tr>` of
//! `<table id="bulkheads">` with `data-name`, `data-key` and `data-full`
//! (`true` when no permit is free); each rate limiter a `<tr>` of `<table
//! id="ratelimiters">` with `data-exhausted` (`true` when no call would be
//! admitted now), each retry budget a `<tr>` of `<table id="budgets">` with
//! `data-spent`, and each route a `<tr>` of `<table id="routes">`. The
//! `<body>` has `data-loaded="true"` once the first answer is in.

use http::Response;
use http::header::{self, HeaderValue};

use crate::body::ResponseBody;

const PAGE: &str = include_str!("dashboard.html");

/// Only the page's own inline code and its own origin.
const POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub(crate) fn response() -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(PAGE));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_self_contained() {
        assert!(PAGE.starts_with("<!doctype html>"));
        for outside in ["http://", "https://", "//cdn", "<link", "src=\""] {
            assert!(!PAGE.contains(outside), "the page refers to {outside}");
        }
        assert!(PAGE.contains("new EventSource("));
        assert!(PAGE.contains("health/breakers"));
        assert!(PAGE.contains("health/bulkheads"));
        assert!(PAGE.contains("health/ratelimiters"));
        assert!(PAGE.contains("health/budgets"));
        assert!(PAGE.contains("health/routes"));
    }
}
