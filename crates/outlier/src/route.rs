//! How a call is sent to the endpoint it was given.

use portcullis_core::BoxError;

use crate::Endpoint;

/// Points a request at an endpoint, before it goes to the inner service.
///
/// Implemented by [`HttpRoute`] (feature `http`), which sets the URI's
/// scheme and authority, and by any `Fn(&mut Req, &Endpoint) -> Result<(),
/// BoxError>`. An error fails the call with it, and the inner service is
/// not called.
///
/// ```
/// use portcullis_core::BoxError;
/// use portcullis_outlier::{Endpoint, Route};
///
/// // Requests are (endpoint name, payload) pairs.
/// let route = |request: &mut (String, u32), endpoint: &Endpoint| -> Result<(), BoxError> {
///     request.0 = endpoint.name().to_owned();
///     Ok(())
/// };
/// # let _ = route;
/// ```
pub trait Route<Req> {
    /// Points `request` at `endpoint`.
    fn route(&self, request: &mut Req, endpoint: &Endpoint) -> Result<(), BoxError>;
}

impl<F, Req> Route<Req> for F
where
    F: Fn(&mut Req, &Endpoint) -> Result<(), BoxError>,
{
    fn route(&self, request: &mut Req, endpoint: &Endpoint) -> Result<(), BoxError> {
        self(request, endpoint)
    }
}

#[cfg(feature = "http")]
pub use self::http_route::HttpRoute;

#[cfg(feature = "http")]
mod http_route {
    use std::fmt;
    use std::sync::Arc;

    use http::Uri;
    use http::uri::{Authority, PathAndQuery, Scheme};
    use portcullis_core::{BoxError, ConfigError};

    use super::Route;
    use crate::{Detector, Endpoint};

    /// Sends an HTTP request to its endpoint by setting the request URI's
    /// authority (and scheme) to the endpoint's name, keeping its path and
    /// query (feature `http`).
    ///
    /// An endpoint named `host:port` keeps the request's scheme (`http`
    /// when the request has none, as for a relative URI); one named
    /// `https://host:port` sets the scheme too. Headers are left as they
    /// are: a `Host` header the caller set is sent as it is, and a client
    /// such as hyper's fills in a missing one from the URI.
    ///
    /// ```
    /// use portcullis_outlier::{Detector, HttpRoute, OutlierConfig, Route};
    ///
    /// let detector = Detector::new("api", ["10.0.0.1:8080", "https://10.0.0.2"], OutlierConfig::default()).unwrap();
    /// let route = HttpRoute::new(&detector).unwrap();
    /// let mut request = http::Request::get("/items?page=2").body(()).unwrap();
    /// route.route(&mut request, &detector.endpoints()[1]).unwrap();
    /// assert_eq!(request.uri(), "https://10.0.0.2/items?page=2");
    /// ```
    #[derive(Clone)]
    pub struct HttpRoute {
        targets: Arc<[(Option<Scheme>, Authority)]>,
    }

    impl HttpRoute {
        /// The route to `detector`'s endpoints; an endpoint whose name is
        /// not an authority (or a URI of a scheme and an authority) is an
        /// error naming it.
        pub fn new(detector: &Detector) -> Result<Self, ConfigError> {
            let targets = detector
                .endpoints()
                .iter()
                .map(|endpoint| {
                    parse(endpoint.name()).map_err(|message| {
                        ConfigError::new(format!("endpoints[{}]", endpoint.index()), message)
                    })
                })
                .collect::<Result<_, _>>()?;
            Ok(Self { targets })
        }
    }

    fn parse(name: &str) -> Result<(Option<Scheme>, Authority), String> {
        if name.contains("://") {
            let uri: Uri = name
                .parse()
                .map_err(|error| format!("`{name}` is not a URI: {error}"))?;
            let parts = uri.into_parts();
            let path = parts
                .path_and_query
                .as_ref()
                .map_or("/", PathAndQuery::as_str);
            if path != "/" && !path.is_empty() {
                return Err(format!("`{name}` must have no path"));
            }
            match (parts.scheme, parts.authority) {
                (Some(scheme), Some(authority)) => Ok((Some(scheme), authority)),
                _ => Err(format!("`{name}` must have a scheme and an authority")),
            }
        } else {
            let authority: Authority = name
                .parse()
                .map_err(|error| format!("`{name}` is not an authority (host:port): {error}"))?;
            Ok((None, authority))
        }
    }

    impl<B> Route<http::Request<B>> for HttpRoute {
        fn route(
            &self,
            request: &mut http::Request<B>,
            endpoint: &Endpoint,
        ) -> Result<(), BoxError> {
            let (scheme, authority) = &self.targets[endpoint.index()];
            let mut parts = std::mem::take(request.uri_mut()).into_parts();
            parts.scheme = Some(match scheme {
                Some(scheme) => scheme.clone(),
                None => parts.scheme.unwrap_or(Scheme::HTTP),
            });
            parts.authority = Some(authority.clone());
            parts
                .path_and_query
                .get_or_insert_with(|| PathAndQuery::from_static("/"));
            *request.uri_mut() = Uri::from_parts(parts)?;
            Ok(())
        }
    }

    impl fmt::Debug for HttpRoute {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_list()
                .entries(self.targets.iter().map(|(scheme, authority)| match scheme {
                    Some(scheme) => format!("{scheme}://{authority}"),
                    None => authority.to_string(),
                }))
                .finish()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::OutlierConfig;

        #[test]
        fn names_that_are_no_authority_are_errors_naming_them() {
            let error = |name: &str| {
                let detector = Detector::new("t", ["a:1", name], OutlierConfig::default()).unwrap();
                HttpRoute::new(&detector).unwrap_err().to_string()
            };
            assert!(
                error("a b").starts_with("endpoints[1]: `a b` is not an authority"),
                "{}",
                error("a b")
            );
            assert_eq!(
                error("http://h/x"),
                "endpoints[1]: `http://h/x` must have no path"
            );
        }

        #[test]
        fn keeps_the_path_and_the_request_scheme() {
            let detector = Detector::new("t", ["h1:81"], OutlierConfig::default()).unwrap();
            let route = HttpRoute::new(&detector).unwrap();
            let mut request = http::Request::get("https://logical/a/b?c=d")
                .body(())
                .unwrap();
            route.route(&mut request, &detector.endpoints()[0]).unwrap();
            assert_eq!(request.uri(), "https://h1:81/a/b?c=d");
            let mut request = http::Request::get("/").body(()).unwrap();
            route.route(&mut request, &detector.endpoints()[0]).unwrap();
            assert_eq!(request.uri(), "http://h1:81/");
        }
    }
}
