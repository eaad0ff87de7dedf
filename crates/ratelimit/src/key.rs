//! Key extractors: what a keyed limit counts by.
//!
//! A [`KeyExtractor`] finds a request's key. Any closure
//! `Fn(&Request) -> Option<Key>` is one; with the `http` feature there are
//! three ready-made ones for `http::Request`:
//!
//! - [`ClientIp`]: the client's IP address, from the connection's peer
//!   address (axum's `ConnectInfo<SocketAddr>`, or a plain `SocketAddr`
//!   extension), and from a forwarding header only behind proxies you name;
//! - [`Header`]: the value of any header (an API key, a tenant id);
//! - [`Route`]: the route — axum's `MatchedPath` when present, else the
//!   request's path.
//!
//! A request without a key (no peer address, no such header, a closure
//! that returns `None`) is not let through unlimited: all of them share one
//! more budget of the same limit.
//!
//! The header and route keys are [`BoundedKey`]s: at most 64 bytes each,
//! whatever the client sends. A value of up to 63 bytes is kept as it is; a
//! longer one is replaced by a 128-bit digest (SipHash, keyed at random
//! once per process, so a client cannot aim two values at one digest). So
//! `max_keys` bounds the memory of a keyed limit, even under a flood of
//! 16 KiB header values, and no key pins the buffer its request was read
//! into.

use std::fmt;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::OnceLock;

#[cfg(feature = "http")]
pub use self::http_keys::{ClientIp, Header, Route};

/// A key of at most 64 bytes: the value itself when it is short (up to
/// [`BoundedKey::INLINE`] bytes), else a 128-bit keyed digest of it.
///
/// No allocation, and a fixed size in a keyed limiter's map, whatever the
/// value's length.
///
/// ```
/// use portcullis_ratelimit::key::BoundedKey;
///
/// let short = BoundedKey::new(b"tenant-42");
/// assert_eq!(short.as_bytes(), Some(&b"tenant-42"[..]));
/// assert_eq!(format!("{short:?}"), "\"tenant-42\"");
///
/// let long = vec![b'x'; 16 * 1024];
/// let digest = BoundedKey::new(&long);
/// assert!(digest.is_digest());
/// assert_eq!(digest, BoundedKey::new(&long), "the same value, the same key");
/// assert_ne!(digest, BoundedKey::new(&long[1..]));
/// assert_eq!(std::mem::size_of::<BoundedKey>(), 64);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BoundedKey {
    /// The length of an inline value, or [`DIGEST`] for a digest.
    len: u8,
    bytes: [u8; BoundedKey::INLINE],
}

/// The `len` of a [`BoundedKey`] holding a digest.
const DIGEST: u8 = u8::MAX;

/// Finds the key a request is limited by.
///
/// ```
/// use portcullis_ratelimit::KeyExtractor;
///
/// struct Order { tenant: Option<String> }
/// let by_tenant = |order: &Order| order.tenant.clone();
/// assert_eq!(by_tenant.extract(&Order { tenant: Some("acme".into()) }), Some("acme".to_owned()));
/// assert_eq!(by_tenant.extract(&Order { tenant: None }), None);
/// ```
pub trait KeyExtractor<Req> {
    /// The key: what gets its own budget.
    type Key: Hash + Eq + Clone + Send + Sync + 'static;

    /// The request's key, or `None` for the shared keyless budget.
    fn extract(&self, request: &Req) -> Option<Self::Key>;
}

impl<Req, K, F> KeyExtractor<Req> for F
where
    F: Fn(&Req) -> Option<K>,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    type Key = K;

    fn extract(&self, request: &Req) -> Option<K> {
        self(request)
    }
}

impl BoundedKey {
    /// The longest value kept as it is; a longer one is digested.
    pub const INLINE: usize = 63;

    /// The key of `value`.
    pub fn new(value: &[u8]) -> Self {
        let mut bytes = [0; Self::INLINE];
        if value.len() <= Self::INLINE {
            bytes[..value.len()].copy_from_slice(value);
            return Self {
                // At most 63: it fits, and it is never `DIGEST`.
                len: value.len() as u8,
                bytes,
            };
        }
        static SEED: OnceLock<RandomState> = OnceLock::new();
        let seed = SEED.get_or_init(RandomState::new);
        let high = seed.hash_one((0u8, value));
        let low = seed.hash_one((1u8, value));
        bytes[..8].copy_from_slice(&high.to_be_bytes());
        bytes[8..16].copy_from_slice(&low.to_be_bytes());
        Self { len: DIGEST, bytes }
    }

    /// The value, if it was short enough to be kept as it is.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        (!self.is_digest()).then(|| &self.bytes[..usize::from(self.len)])
    }

    /// Whether the value was too long and this is its digest.
    pub fn is_digest(&self) -> bool {
        self.len == DIGEST
    }
}

impl From<&str> for BoundedKey {
    fn from(value: &str) -> Self {
        Self::new(value.as_bytes())
    }
}

impl From<&[u8]> for BoundedKey {
    fn from(value: &[u8]) -> Self {
        Self::new(value)
    }
}

impl fmt::Debug for BoundedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_bytes() {
            Some(bytes) => fmt::Debug::fmt(&String::from_utf8_lossy(bytes), f),
            None => {
                f.write_str("#")?;
                self.bytes[..16]
                    .iter()
                    .try_for_each(|byte| write!(f, "{byte:02x}"))
            }
        }
    }
}

#[cfg(feature = "http")]
mod http_keys {
    use std::net::{IpAddr, Ipv6Addr, SocketAddr};

    use http::{HeaderName, Request};
    use portcullis_core::ConfigError;

    use super::{BoundedKey, KeyExtractor};

    /// The client's IP address.
    ///
    /// By default it is the connection's peer address, read from the
    /// request's extensions: axum's `ConnectInfo<SocketAddr>` (feature
    /// `axum`; serve the router with
    /// `into_make_service_with_connect_info::<SocketAddr>()`) or a plain
    /// `SocketAddr` (which a hyper server can insert). Forwarding headers
    /// are ignored: anyone can send one.
    ///
    /// Behind proxies, name them with
    /// [`behind_proxies`](Self::behind_proxies): when the peer is one of
    /// them, the header (e.g. `x-forwarded-for`, a comma-separated list of
    /// addresses, each proxy appending the one it got the request from) is
    /// read **from the right**, skipping trusted proxies; the first
    /// untrusted address is the client. If every address is trusted, the
    /// left-most one is. An entry that is not an address stops the walk:
    /// the request counts as coming from the last trusted hop, so a forged
    /// entry can neither pick a victim's budget nor escape the limit.
    ///
    /// IPv6 clients are grouped by their /64 prefix by default (one host
    /// usually owns a whole /64, and could otherwise take a new key per
    /// request); change it with [`ipv6_prefix`](Self::ipv6_prefix).
    ///
    /// ```
    /// use portcullis_ratelimit::key::ClientIp;
    /// use std::net::{IpAddr, SocketAddr};
    ///
    /// let client_ip = ClientIp::new()
    ///     .behind_proxies("x-forwarded-for", ["10.0.0.0/8"])
    ///     .unwrap();
    /// let mut request = http::Request::builder()
    ///     .header("x-forwarded-for", "203.0.113.9, 198.51.100.7, 10.0.0.2")
    ///     .body(())
    ///     .unwrap();
    /// request.extensions_mut().insert(SocketAddr::from(([10, 0, 0, 1], 443)));
    /// let expected: IpAddr = "198.51.100.7".parse().unwrap();
    /// assert_eq!(client_ip.client_ip(&request), Some(expected));
    /// ```
    #[derive(Clone, Debug)]
    pub struct ClientIp {
        proxies: Option<Proxies>,
        ipv6_prefix: u8,
    }

    /// The value of a header (the first, if it is repeated).
    #[derive(Clone, Debug)]
    pub struct Header {
        name: HeaderName,
    }

    /// The route: axum's `MatchedPath` (feature `axum`) when the request
    /// has one — as it does in a layer on a route or a handler, not in one
    /// on the whole `Router` — else the request's path.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct Route;

    #[derive(Clone, Debug)]
    struct Proxies {
        header: HeaderName,
        trusted: Vec<IpNet>,
    }

    /// An address range: `addr/prefix`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct IpNet {
        addr: IpAddr,
        prefix: u8,
    }

    impl ClientIp {
        /// The peer address; IPv6 grouped by /64.
        pub fn new() -> Self {
            Self {
                proxies: None,
                ipv6_prefix: 64,
            }
        }

        /// Reads `header` when the peer is one of the `trusted` proxies:
        /// addresses (`"10.0.0.1"`) or ranges (`"10.0.0.0/8"`, `"fd00::/8"`).
        pub fn behind_proxies<I>(self, header: &str, trusted: I) -> Result<Self, ConfigError>
        where
            I: IntoIterator,
            I::Item: AsRef<str>,
        {
            let header = HeaderName::try_from(header).map_err(|_| {
                ConfigError::new(
                    "proxy_header",
                    format!("must be a header name, got {header:?}"),
                )
            })?;
            let trusted = trusted
                .into_iter()
                .enumerate()
                .map(|(i, entry)| {
                    let entry = entry.as_ref();
                    IpNet::parse(entry).ok_or_else(|| {
                        ConfigError::new(
                            format!("trusted_proxies[{i}]"),
                            format!(
                                "must be an IP address or a range such as 10.0.0.0/8, got {entry:?}"
                            ),
                        )
                    })
                })
                .collect::<Result<_, _>>()?;
            Ok(Self {
                proxies: Some(Proxies { header, trusted }),
                ..self
            })
        }

        /// Group IPv6 clients by their first `bits` bits (default 64; 128:
        /// every address on its own; more than 128 counts as 128).
        pub fn ipv6_prefix(self, bits: u8) -> Self {
            Self {
                ipv6_prefix: bits.min(128),
                ..self
            }
        }

        /// The request's client address, as it is counted (IPv6 masked to
        /// the prefix); `None` when the request has no peer address.
        pub fn client_ip<B>(&self, request: &Request<B>) -> Option<IpAddr> {
            let peer = peer(request)?.ip().to_canonical();
            let Some(proxies) = &self.proxies else {
                return Some(self.mask(peer));
            };
            if !proxies.trust(peer) {
                return Some(self.mask(peer));
            }
            let mut client = peer;
            for value in request.headers().get_all(&proxies.header).iter().rev() {
                let Ok(text) = value.to_str() else {
                    return Some(self.mask(client));
                };
                for entry in text.rsplit(',') {
                    let Some(ip) = parse_forwarded(entry.trim()) else {
                        return Some(self.mask(client));
                    };
                    client = ip;
                    if !proxies.trust(ip) {
                        return Some(self.mask(ip));
                    }
                }
            }
            Some(self.mask(client))
        }

        fn mask(&self, ip: IpAddr) -> IpAddr {
            match ip {
                IpAddr::V4(_) => ip,
                IpAddr::V6(v6) => {
                    let mask = u128::MAX
                        .checked_shl(128 - u32::from(self.ipv6_prefix))
                        .unwrap_or(0);
                    IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
                }
            }
        }
    }

    impl Default for ClientIp {
        fn default() -> Self {
            Self::new()
        }
    }

    impl<B> KeyExtractor<Request<B>> for ClientIp {
        type Key = IpAddr;

        fn extract(&self, request: &Request<B>) -> Option<IpAddr> {
            self.client_ip(request)
        }
    }

    impl Header {
        /// The value of header `name`.
        pub fn new(name: HeaderName) -> Self {
            Self { name }
        }
    }

    impl<B> KeyExtractor<Request<B>> for Header {
        type Key = BoundedKey;

        fn extract(&self, request: &Request<B>) -> Option<BoundedKey> {
            let value = request.headers().get(&self.name)?;
            Some(BoundedKey::new(value.as_bytes()))
        }
    }

    impl<B> KeyExtractor<Request<B>> for Route {
        type Key = BoundedKey;

        fn extract(&self, request: &Request<B>) -> Option<BoundedKey> {
            #[cfg(feature = "axum")]
            if let Some(path) = request.extensions().get::<axum::extract::MatchedPath>() {
                return Some(BoundedKey::new(path.as_str().as_bytes()));
            }
            Some(BoundedKey::new(request.uri().path().as_bytes()))
        }
    }

    impl Proxies {
        fn trust(&self, ip: IpAddr) -> bool {
            self.trusted.iter().any(|net| net.contains(ip))
        }
    }

    impl IpNet {
        fn parse(text: &str) -> Option<Self> {
            let (addr, prefix) = match text.trim().split_once('/') {
                Some((addr, prefix)) => (addr, Some(prefix)),
                None => (text.trim(), None),
            };
            let addr = addr.parse::<IpAddr>().ok()?.to_canonical();
            let bits = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                Some(prefix) => prefix.parse::<u8>().ok().filter(|&p| p <= bits)?,
                None => bits,
            };
            Some(Self { addr, prefix })
        }

        fn contains(&self, ip: IpAddr) -> bool {
            let shift = |bits: u32| bits - u32::from(self.prefix);
            match (self.addr, ip) {
                (IpAddr::V4(net), IpAddr::V4(ip)) => {
                    let mask = u32::MAX.checked_shl(shift(32)).unwrap_or(0);
                    u32::from(net) & mask == u32::from(ip) & mask
                }
                (IpAddr::V6(net), IpAddr::V6(ip)) => {
                    let mask = u128::MAX.checked_shl(shift(128)).unwrap_or(0);
                    u128::from(net) & mask == u128::from(ip) & mask
                }
                _ => false,
            }
        }
    }

    fn peer<B>(request: &Request<B>) -> Option<SocketAddr> {
        #[cfg(feature = "axum")]
        if let Some(axum::extract::ConnectInfo(addr)) = request
            .extensions()
            .get::<axum::extract::ConnectInfo<SocketAddr>>(
        ) {
            return Some(*addr);
        }
        request.extensions().get::<SocketAddr>().copied()
    }

    /// An entry of a forwarding header: `1.2.3.4`, `1.2.3.4:80`, `::1`,
    /// `[::1]:80`.
    fn parse_forwarded(entry: &str) -> Option<IpAddr> {
        let ip = entry
            .parse::<IpAddr>()
            .or_else(|_| entry.parse::<SocketAddr>().map(|addr| addr.ip()))
            .ok()?;
        Some(ip.to_canonical())
    }

    #[cfg(all(test, not(loom)))]
    mod tests {
        use super::*;

        fn request(peer: &str, forwarded: &[&str]) -> Request<()> {
            let mut builder = Request::builder();
            for value in forwarded {
                builder = builder.header("x-forwarded-for", *value);
            }
            let mut request = builder.body(()).unwrap();
            request
                .extensions_mut()
                .insert(peer.parse::<SocketAddr>().unwrap());
            request
        }

        fn ip(text: &str) -> Option<IpAddr> {
            Some(text.parse().unwrap())
        }

        #[test]
        fn the_peer_address_by_default_and_headers_ignored() {
            let plain = ClientIp::new();
            let forged = request("198.51.100.1:5000", &["203.0.113.9"]);
            assert_eq!(plain.client_ip(&forged), ip("198.51.100.1"));
            assert_eq!(plain.client_ip(&Request::new(())), None, "no peer address");
        }

        #[test]
        fn behind_proxies_the_right_most_untrusted_entry() {
            let behind = ClientIp::new()
                .behind_proxies("x-forwarded-for", ["10.0.0.0/8", "192.0.2.1"])
                .unwrap();
            let via = |peer, forwarded: &[&str]| behind.client_ip(&request(peer, forwarded));
            assert_eq!(
                via("10.1.1.1:1", &["203.0.113.9, 198.51.100.7"]),
                ip("198.51.100.7")
            );
            assert_eq!(
                via("10.1.1.1:1", &["203.0.113.9", "198.51.100.7, 192.0.2.1"]),
                ip("198.51.100.7"),
                "across repeated header lines, trusted hops skipped"
            );
            assert_eq!(
                via("198.51.100.50:1", &["203.0.113.9"]),
                ip("198.51.100.50"),
                "an untrusted peer's header is ignored"
            );
            assert_eq!(
                via("10.1.1.1:1", &["10.2.2.2, 10.3.3.3"]),
                ip("10.2.2.2"),
                "all trusted: the left-most"
            );
            assert_eq!(
                via("10.1.1.1:1", &[]),
                ip("10.1.1.1"),
                "no header: the proxy itself"
            );
            assert_eq!(
                via("10.1.1.1:1", &["203.0.113.9, garbage, 10.3.3.3"]),
                ip("10.3.3.3"),
                "a malformed entry stops the walk at the last trusted hop"
            );
            assert_eq!(via("10.1.1.1:1", &["[2001:db8::1]:443"]), ip("2001:db8::"));
            assert_eq!(
                via("[::ffff:10.1.1.1]:1", &["203.0.113.9:80"]),
                ip("203.0.113.9"),
                "v4-mapped peers"
            );
        }

        #[test]
        fn ipv6_is_grouped_by_prefix() {
            let request = request("[2001:db8:1:2:3:4:5:6]:443", &[]);
            assert_eq!(ClientIp::new().client_ip(&request), ip("2001:db8:1:2::"));
            assert_eq!(
                ClientIp::new().ipv6_prefix(48).client_ip(&request),
                ip("2001:db8:1::")
            );
            assert_eq!(
                ClientIp::new().ipv6_prefix(200).client_ip(&request),
                ip("2001:db8:1:2:3:4:5:6")
            );
            assert_eq!(ClientIp::new().ipv6_prefix(0).client_ip(&request), ip("::"));
        }

        #[test]
        fn bad_proxy_settings_name_the_entry() {
            let error = ClientIp::new()
                .behind_proxies("x-forwarded-for", ["10.0.0.0/8", "10.0.0.0/33"])
                .unwrap_err();
            assert_eq!(
                error.to_string(),
                "trusted_proxies[1]: must be an IP address or a range such as 10.0.0.0/8, got \"10.0.0.0/33\""
            );
            let error = ClientIp::new()
                .behind_proxies("bad header", ["10.0.0.1"])
                .unwrap_err();
            assert_eq!(error.field(), "proxy_header");
        }

        #[test]
        fn header_and_route_keys() {
            let request = Request::builder()
                .uri("/orders/42?x=1")
                .header("x-api-key", "k1")
                .body(())
                .unwrap();
            let header = Header::new(HeaderName::from_static("x-api-key"));
            assert_eq!(header.extract(&request), Some(BoundedKey::new(b"k1")));
            let missing = Header::new(HeaderName::from_static("x-tenant"));
            assert_eq!(missing.extract(&request), None);
            assert_eq!(
                Route.extract(&request).unwrap().as_bytes(),
                Some(&b"/orders/42"[..])
            );
        }

        #[test]
        fn long_header_and_route_keys_are_digests_of_a_fixed_size() {
            let long = "k".repeat(16 * 1024);
            let request = |value: &str| {
                Request::builder()
                    .uri(format!("/{value}"))
                    .header("x-api-key", value)
                    .body(())
                    .unwrap()
            };
            let header = Header::new(HeaderName::from_static("x-api-key"));
            let key = header.extract(&request(&long)).unwrap();
            assert!(key.is_digest());
            assert_eq!(key.as_bytes(), None);
            assert_eq!(header.extract(&request(&long)), Some(key), "stable");
            let other = header.extract(&request(&long[1..])).unwrap();
            assert_ne!(key, other, "another value, another key");
            assert!(Route.extract(&request(&long)).unwrap().is_digest());
            let edge = "e".repeat(BoundedKey::INLINE);
            assert_eq!(
                header.extract(&request(&edge)).unwrap().as_bytes(),
                Some(edge.as_bytes()),
                "63 bytes are kept as they are"
            );
            assert!(
                header
                    .extract(&request(&format!("{edge}e")))
                    .unwrap()
                    .is_digest()
            );
            assert!(format!("{key:?}").starts_with('#'));
        }
    }
}
