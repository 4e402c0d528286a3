//! Who the client is when requests pass through reverse proxies. Exactly one forwarding header
//! is read, the one the operator's proxy sets (`OPENTRUSTY_FORWARDED_HEADER`: `X-Forwarded-For`
//! with `X-Forwarded-Proto`, or RFC 7239 `Forwarded`), and with `X-Request-Id` it is believed only
//! when the connection comes from an address in `OPENTRUSTY_TRUSTED_PROXIES`; otherwise the
//! socket address is the client. The other header is never read: a proxy passes on what it does
//! not set, so a client could write it.

use std::net::IpAddr;

use axum::http::HeaderMap;

/// An address range in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text.trim(), None),
        };
        let network: IpAddr = addr.parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Cidr { network, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// An IPv4 address mapped into IPv6 (`::ffff:a.b.c.d`) compares as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The forwarding header the trusted proxies set, and the only one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For`, and `X-Forwarded-Proto` for the scheme: what nginx and Caddy set.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded`: its `for=` chain and `proto=`.
    Forwarded,
}

impl ForwardedHeader {
    /// `x-forwarded-for` or `forwarded`, in any case.
    pub fn parse(text: &str) -> Option<ForwardedHeader> {
        match text.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Some(ForwardedHeader::XForwardedFor),
            "forwarded" => Some(ForwardedHeader::Forwarded),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ForwardedHeader::XForwardedFor => "X-Forwarded-For",
            ForwardedHeader::Forwarded => "Forwarded",
        }
    }
}

/// The proxies whose forwarded headers are believed, and which header they set.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    ranges: Vec<Cidr>,
    header: ForwardedHeader,
}

impl TrustedProxies {
    /// Proxies that set `X-Forwarded-For`; see [`TrustedProxies::with_header`].
    pub fn new(ranges: Vec<Cidr>) -> Self {
        Self {
            ranges,
            header: ForwardedHeader::default(),
        }
    }

    pub fn with_header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    pub fn ranges(&self) -> &[Cidr] {
        &self.ranges
    }

    pub fn header(&self) -> ForwardedHeader {
        self.header
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|c| c.contains(ip))
    }

    /// The client's address and the scheme it used, for a request that arrived from `peer`.
    /// From an untrusted peer: the peer, no scheme. From a trusted one: the nearest address in
    /// the configured header's chain that is not itself a trusted proxy (so a client cannot plant
    /// an address by sending its own header: proxies append, and what it wrote lies further
    /// left).
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> (IpAddr, Option<String>) {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return (peer, None);
        }
        let (chain, proto) = match self.header {
            ForwardedHeader::XForwardedFor => (
                header_list(headers, "x-forwarded-for")
                    .iter()
                    .map(|a| parse_node(a))
                    .collect(),
                header_list(headers, "x-forwarded-proto").last().cloned(),
            ),
            ForwardedHeader::Forwarded => forwarded(headers),
        };
        let mut client = peer;
        for hop in chain.iter().rev() {
            // A hop we cannot read could hide anything written to its left: the client is then
            // the last trusted proxy we could read.
            let Some(hop) = hop else {
                break;
            };
            client = canonical(*hop);
            if !self.trusts(client) {
                break;
            }
        }
        let proto = proto
            .map(|p| p.to_ascii_lowercase())
            .filter(|p| p == "http" || p == "https");
        (client, proto)
    }
}

/// The comma-separated items of every instance of header `name`.
fn header_list(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// RFC 7239 `Forwarded`: one hop per element (`None` when its `for=` is missing, `unknown`,
/// obfuscated or unreadable) and the last `proto=`.
fn forwarded(headers: &HeaderMap) -> (Vec<Option<IpAddr>>, Option<String>) {
    let mut chain = Vec::new();
    let mut proto = None;
    for element in header_list(headers, "forwarded") {
        let mut hop = None;
        for pair in element.split(';') {
            let Some((k, v)) = pair.trim().split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"');
            match k.trim().to_ascii_lowercase().as_str() {
                "for" => hop = parse_node(v),
                "proto" => proto = Some(v.to_owned()),
                _ => {}
            }
        }
        chain.push(hop);
    }
    (chain, proto)
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]:80`, `2001:db8::1`.
fn parse_node(text: &str) -> Option<IpAddr> {
    let t = text.trim();
    if let Ok(ip) = t.parse() {
        return Some(ip);
    }
    if let Some(rest) = t.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    t.rsplit_once(':')
        .and_then(|(host, _)| host.parse::<std::net::Ipv4Addr>().ok())
        .map(IpAddr::V4)
}

/// A request id a client or proxy may hand us: 1 to 128 visible ASCII characters.
pub fn acceptable_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|c| Cidr::parse(c).unwrap()).collect())
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn cidrs_parse_and_match() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.255.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
        let one = Cidr::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!(
            Cidr::parse("::/0")
                .unwrap()
                .contains("2001:db8::1".parse().unwrap())
        );
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/", "/8", "::1/129"] {
            assert!(Cidr::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn forwarded_headers_from_untrusted_peers_are_ignored() {
        let p = proxies(&["10.0.0.0/8"]);
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
        ]);
        let (ip, proto) = p.client("203.0.113.9".parse().unwrap(), &h);
        assert_eq!(ip.to_string(), "203.0.113.9");
        assert_eq!(proto, None);
    }

    #[test]
    fn the_nearest_untrusted_hop_is_the_client() {
        let p = proxies(&["10.0.0.0/8"]);
        let forwarded = proxies(&["10.0.0.0/8"]).with_header(ForwardedHeader::Forwarded);
        // The client planted 6.6.6.6; the trusted proxy appended what it saw.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 198.51.100.4"),
            ("x-forwarded-for", "10.0.0.7"),
            ("x-forwarded-proto", "https"),
        ]);
        let (ip, proto) = p.client("10.0.0.2".parse().unwrap(), &h);
        assert_eq!(ip.to_string(), "198.51.100.4");
        assert_eq!(proto.as_deref(), Some("https"));
        let f = headers(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::7]:4711\";proto=https",
        )]);
        let (ip, proto) = forwarded.client("10.9.9.9".parse().unwrap(), &f);
        assert_eq!(ip.to_string(), "2001:db8::7");
        assert_eq!(proto.as_deref(), Some("https"));
        // Nothing forwarded: the proxy itself.
        let (ip, _) = p.client("10.0.0.2".parse().unwrap(), &HeaderMap::new());
        assert_eq!(ip.to_string(), "10.0.0.2");
    }

    #[test]
    fn only_the_configured_header_is_read() {
        let xff = proxies(&["127.0.0.1"]);
        let forwarded = proxies(&["127.0.0.1"]).with_header(ForwardedHeader::Forwarded);
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        // nginx set X-Forwarded-For and passed on the client's own Forwarded.
        let h = headers(&[
            ("forwarded", "for=6.6.6.6;proto=https"),
            ("x-forwarded-for", "198.51.100.4"),
            ("x-forwarded-proto", "http"),
        ]);
        assert_eq!(
            xff.client(proxy, &h),
            ("198.51.100.4".parse().unwrap(), Some("http".to_owned()))
        );
        let planted_only = headers(&[("forwarded", "for=6.6.6.6;proto=https")]);
        assert_eq!(xff.client(proxy, &planted_only), (proxy, None));
        // A proxy that sets Forwarded passed on the client's X-Forwarded-*.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=198.51.100.4;proto=http"),
        ]);
        assert_eq!(
            forwarded.client(proxy, &h),
            ("198.51.100.4".parse().unwrap(), Some("http".to_owned()))
        );
        let planted_only = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
        ]);
        assert_eq!(forwarded.client(proxy, &planted_only), (proxy, None));
        assert_eq!(
            ForwardedHeader::parse(" Forwarded "),
            Some(ForwardedHeader::Forwarded)
        );
        assert_eq!(
            ForwardedHeader::parse("X-FORWARDED-FOR"),
            Some(ForwardedHeader::XForwardedFor)
        );
        for bad in ["", "x-real-ip", "forwarded-for", "both"] {
            assert_eq!(ForwardedHeader::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_unreadable_hop_ends_the_chain_at_the_last_trusted_proxy() {
        let xff = proxies(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "6.6.6.6, not-an-address, 10.0.0.4")]);
        let (ip, _) = xff.client("10.0.0.2".parse().unwrap(), &h);
        assert_eq!(ip.to_string(), "10.0.0.4");
        let forwarded = proxies(&["10.0.0.0/8"]).with_header(ForwardedHeader::Forwarded);
        for unknown in ["for=unknown", "for=_hidden", "proto=https"] {
            let h = headers(&[(
                "forwarded",
                &format!("for=6.6.6.6, {unknown}, for=10.0.0.4"),
            )]);
            let (ip, _) = forwarded.client("10.0.0.2".parse().unwrap(), &h);
            assert_eq!(ip.to_string(), "10.0.0.4", "{unknown}");
        }
        // An IPv4-mapped peer is the IPv4 proxy.
        let (ip, _) = xff.client(
            "::ffff:10.0.0.2".parse().unwrap(),
            &headers(&[("x-forwarded-for", "203.0.113.8")]),
        );
        assert_eq!(ip.to_string(), "203.0.113.8");
    }

    #[test]
    fn request_ids_are_bounded_visible_ascii() {
        assert!(acceptable_request_id("abc-123_XYZ"));
        assert!(!acceptable_request_id(""));
        assert!(!acceptable_request_id("a b"));
        assert!(!acceptable_request_id(&"x".repeat(129)));
    }
}
