//! The dashboard: one self-contained HTML page (inline CSS and JavaScript,
//! nothing fetched from elsewhere) served at `GET /`.
//!
//! The page lists every breaker with its state as a colour, its rates and
//! counts, every bulkhead with its calls in flight (of the most
//! allowed), queued and rejected, every rate limiter with the calls it
//! would admit now (of its burst), its limit and its rejections, and every
//! retry budget with its balance, ratio, retries and refusals. It
//! subscribes to `events` with an `EventSource` and applies each
//! transition at once, and it re-fetches `health/breakers`,
//! `health/bulkheads`, `health/ratelimiters` and `health/budgets` every two
//! seconds and after every event. Its URLs are relative to the page, so it
//! works wherever the service is mounted.
//!
//! Each breaker is an `<article class="breaker">` with `data-name`,
//! `data-key` and `data-state` (`CLOSED`, `OPEN`, ...) attributes; the
//! event log is `<ol id="events">`, one `<li data-type="...">` per event.
//! Each bulkhead is a `<tr>` of `<table id="bulkheads">` with `data-name`,
//! `data-key` and `data-full` (`true` when no permit is free); each rate
//! limiter a `<tr>` of `<table id="ratelimiters">` with `data-exhausted`
//! (`true` when no call would be admitted now), and each retry budget a
//! `<tr>` of `<table id="budgets">` with `data-spent`.

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
    }
}
