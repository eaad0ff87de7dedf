//! HTTP and gRPC: the retry crate's HTTP rules, body replay and
//! idempotency gate, and gRPC's non-fatal status codes.

use std::sync::Arc;

#[cfg(feature = "grpc")]
use http::Response;
#[cfg(feature = "grpc")]
use portcullis_core::BoxError;
use portcullis_core::{ConfigError, HttpClassifier};
#[cfg(feature = "grpc")]
use portcullis_retry::RetryPredicate;
use portcullis_retry::{HttpPredicate, HttpReplay, Policy};

use crate::{HedgeConfig, HedgeLayer};

/// The HTTP hedge policy: [`HttpClassifier`] decides good answers (a 5xx,
/// 408 or 429 is a failure), [`HttpPredicate`] the failures after which
/// the next hedge goes at once (errors, 408, 429, 500, 502, 503, 504), and
/// [`HttpReplay`] sends requests again: the retry crate's body replay and
/// idempotency gate.
pub type HttpPolicy = Policy<HttpClassifier, HttpPredicate, HttpReplay>;

/// The gRPC hedge policy: [`GrpcClassifier`](portcullis_core::GrpcClassifier)
/// decides good answers, [`NonFatalCodes`] the failures after which the
/// next hedge goes at once, [`HttpReplay`] sends calls again — once they
/// are declared idempotent, since every gRPC call is a POST.
#[cfg(feature = "grpc")]
pub type GrpcPolicy = Policy<portcullis_core::GrpcClassifier, NonFatalCodes, HttpReplay>;

/// gRPC's `hedgingPolicy.nonFatalStatusCodes`: the `grpc-status` codes
/// (read from the response headers, as a trailers-only response carries
/// them) after which the next hedge is sent at once. Any other failure
/// stops hedging; the attempts in flight go on. An error that is no
/// Portcullis rejection, and a response that is not `200 OK` but one that
/// [`HttpPredicate`] retries, are non-fatal too.
///
/// ```
/// use portcullis_hedge::NonFatalCodes;
/// use portcullis_retry::RetryPredicate;
///
/// let codes = NonFatalCodes::new([14]);
/// let unavailable = http::Response::builder().header("grpc-status", "14").body(()).unwrap();
/// let internal = http::Response::builder().header("grpc-status", "13").body(()).unwrap();
/// assert!(codes.is_retryable(Ok(&unavailable)));
/// assert!(!codes.is_retryable(Ok(&internal)));
/// ```
#[cfg(feature = "grpc")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NonFatalCodes {
    /// Bit `c` for code `c`.
    mask: u32,
}

#[cfg(feature = "grpc")]
impl NonFatalCodes {
    /// The codes in `codes` (codes above 31 are ignored).
    pub fn new(codes: impl IntoIterator<Item = u32>) -> Self {
        let mask = codes
            .into_iter()
            .filter(|&code| code < 32)
            .fold(0, |mask, code| mask | 1 << code);
        Self { mask }
    }

    /// Whether `code` is non-fatal.
    pub fn contains(&self, code: u32) -> bool {
        code < 32 && self.mask & (1 << code) != 0
    }
}

#[cfg(feature = "grpc")]
impl<B> RetryPredicate<Response<B>> for NonFatalCodes {
    fn is_retryable(&self, result: Result<&Response<B>, &BoxError>) -> bool {
        portcullis_retry::GrpcPredicate::is_retryable_with(result, |code| self.contains(code))
    }
}

fn replay(config: &HedgeConfig) -> HttpReplay {
    HttpReplay::default()
        .body_limit(config.body_limit())
        .retry_non_idempotent(config.hedge_non_idempotent())
}

impl HedgeLayer<HttpPolicy> {
    /// An HTTP layer named `name` with `config` (validated first):
    /// [`HttpPolicy`], with the configuration's body limit and idempotency
    /// gate (GET, HEAD, OPTIONS, TRACE, PUT and DELETE are hedged; POST,
    /// PATCH and CONNECT only with an `Idempotency-Key` header, the
    /// [`Idempotent`](portcullis_retry::Idempotent) extension, or
    /// `hedge_non_idempotent`).
    pub fn http(name: impl Into<Arc<str>>, config: HedgeConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let policy = Policy::from_parts(HttpClassifier, HttpPredicate, replay(&config));
        Ok(Self::build(name.into(), config, None, policy))
    }
}

#[cfg(feature = "grpc")]
impl HedgeLayer<GrpcPolicy> {
    /// A gRPC layer named `name` with `config` (validated first):
    /// [`GrpcPolicy`] with the configuration's `non_fatal_status_codes`.
    /// Calls are hedged only once declared idempotent (`hedge_non_idempotent`
    /// or the [`Idempotent`](portcullis_retry::Idempotent) extension).
    pub fn grpc(name: impl Into<Arc<str>>, config: HedgeConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let codes = NonFatalCodes::new(config.non_fatal_status_codes().iter().copied());
        let policy = Policy::from_parts(portcullis_core::GrpcClassifier, codes, replay(&config));
        Ok(Self::build(name.into(), config, None, policy))
    }
}
