//! HTTP request parts for answering closures.

use http::Request;
use http::request::Parts;

use crate::Extract;

/// Takes the head of an `http::Request` before it is sent — method, URI,
/// version and headers, cloned; not the body, and not the extensions (they
/// may be many and costly to clone) — for
/// [`FallbackLayer::from_parts`](crate::FallbackLayer::from_parts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpParts;

impl<B> Extract<Request<B>> for HttpParts {
    type Context = Parts;

    fn extract(&self, request: &Request<B>) -> Parts {
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = request.method().clone();
        parts.uri = request.uri().clone();
        parts.version = request.version();
        parts.headers = request.headers().clone();
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_head_but_not_the_extensions() {
        let mut request = Request::post("http://example.com/orders?id=7")
            .header("x-tenant", "acme")
            .version(http::Version::HTTP_2)
            .body("payload")
            .unwrap();
        request.extensions_mut().insert(5u32);
        let parts = HttpParts.extract(&request);
        assert_eq!(parts.method, http::Method::POST);
        assert_eq!(parts.uri, "http://example.com/orders?id=7");
        assert_eq!(parts.version, http::Version::HTTP_2);
        assert_eq!(parts.headers["x-tenant"], "acme");
        assert!(parts.extensions.get::<u32>().is_none());
    }
}
