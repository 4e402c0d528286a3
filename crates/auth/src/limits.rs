//! Rate limits per client on the endpoints worth guessing at: sign-in, enrollment, authorization
//! and token requests. Token buckets in this process's memory, keyed by the client address the
//! edge layer derived (trusted-proxy rules applied): an IPv4 address, or the IPv6 network of the
//! configured prefix (a /64 by default, what one subscriber gets). Over the limit: 429 with
//! `Retry-After`, as a page or as JSON depending on the endpoint.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;

use crate::AuthState;
use crate::http::no_store_json;
use crate::pages;

/// `requests` per `period_secs`, with a burst of `requests`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub requests: u32,
    pub period_secs: u32,
}

impl Rate {
    /// `N/SECONDS` (`10/60`), or `off`.
    pub fn parse(text: &str) -> Result<Option<Rate>, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let (n, p) = t
            .split_once('/')
            .ok_or_else(|| format!("{t:?} is not N/SECONDS (10/60) or off"))?;
        let requests: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("{n:?} is not a number"))?;
        let period_secs: u32 = p
            .trim()
            .parse()
            .map_err(|_| format!("{p:?} is not a number"))?;
        if requests == 0 || period_secs == 0 || period_secs > 86_400 {
            return Err(format!(
                "{t:?}: both numbers must be positive, the period at most a day"
            ));
        }
        Ok(Some(Rate {
            requests,
            period_secs,
        }))
    }
}

/// The limited kinds of request and their rates (`None`: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub login: Option<Rate>,
    pub enroll: Option<Rate>,
    pub authorize: Option<Rate>,
    pub token: Option<Rate>,
    /// IPv6 clients are counted per network of this prefix length (32 to 128): one host
    /// usually holds a whole /64 and could otherwise take a fresh budget per address.
    pub ipv6_prefix: u8,
}

/// The IPv6 prefix length clients are counted by, unless configured otherwise.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

impl Default for RateLimits {
    fn default() -> Self {
        let r = |requests, period_secs| {
            Some(Rate {
                requests,
                period_secs,
            })
        };
        Self {
            login: r(10, 60),
            enroll: r(10, 60),
            authorize: r(60, 60),
            token: r(1200, 60),
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Login = 0,
    Enroll = 1,
    Authorize = 2,
    Token = 3,
}

/// Which limit a path falls under, and whether it answers with pages (else JSON).
fn kind(path: &str) -> Option<(Kind, bool)> {
    match path {
        "/login" | "/password" => Some((Kind::Login, true)),
        "/api/v1/auth/login" => Some((Kind::Login, false)),
        "/enroll" => Some((Kind::Enroll, true)),
        "/oauth2/authorize" => Some((Kind::Authorize, true)),
        "/oauth2/token" | "/oauth2/introspect" | "/oauth2/revoke" => Some((Kind::Token, false)),
        _ => None,
    }
}

struct Bucket {
    tokens: f64,
    /// The last request, refused ones included.
    at: Instant,
}

impl Bucket {
    /// Tokens held at `now`, after refilling at `per_sec` up to `capacity`.
    fn level(&self, now: Instant, capacity: f64, per_sec: f64) -> f64 {
        (self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * per_sec).min(capacity)
    }
}

/// Most clients tracked per kind of request (about 3 MiB each at most). A new client when the
/// table is full makes room by forgetting the fullest buckets, never by going untracked.
const MAX_TRACKED: usize = 50_000;

/// A full table forgets this share of itself at once, so that one sweep (linear in the table)
/// pays for many new clients instead of running for each.
const EVICTED_SHARE: usize = 10;

/// The buckets of every limited kind, keyed by client.
pub struct Limiter {
    ipv6_prefix: u8,
    tables: [Mutex<HashMap<IpAddr, Bucket>>; 4],
}

impl Default for Limiter {
    fn default() -> Self {
        Self::new(DEFAULT_IPV6_PREFIX)
    }
}

impl Limiter {
    /// `ipv6_prefix` is clamped to 32..=128 (the configuration refuses anything else).
    pub fn new(ipv6_prefix: u8) -> Self {
        Self {
            ipv6_prefix: ipv6_prefix.clamp(32, 128),
            tables: Default::default(),
        }
    }

    /// Who a request counts against: an IPv4 address (also when written IPv4-mapped), or the
    /// IPv6 network of the configured prefix.
    fn client(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => IpAddr::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let mask = u128::MAX
                        .checked_shl(128 - u32::from(self.ipv6_prefix))
                        .unwrap_or(0);
                    IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
                }
            },
        }
    }

    /// Takes one token for the client at `ip`; `Err(seconds)` to wait when there is none.
    fn take(&self, kind: Kind, ip: IpAddr, rate: Rate, now: Instant) -> Result<(), u64> {
        let client = self.client(ip);
        let capacity = f64::from(rate.requests);
        let per_sec = capacity / f64::from(rate.period_secs);
        // A panic elsewhere while holding the lock leaves consistent buckets: keep limiting.
        let mut table = self.tables[kind as usize]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if table.len() >= MAX_TRACKED && !table.contains_key(&client) {
            make_room(&mut table, now, capacity, per_sec);
        }
        let b = table.entry(client).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        b.tokens = b.level(now, capacity, per_sec);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / per_sec).ceil().max(1.0) as u64)
        }
    }
}

/// Forgets the fullest buckets of a full table, least recently used first among equals: a
/// bucket that refilled holds no information, and one nearly full loses its client little.
/// Emptied buckets (clients being limited) go last, so a flood of new addresses cannot lift
/// anyone's limit.
fn make_room(table: &mut HashMap<IpAddr, Bucket>, now: Instant, capacity: f64, per_sec: f64) {
    table.retain(|_, b| b.level(now, capacity, per_sec) < capacity);
    let keep = MAX_TRACKED - MAX_TRACKED / EVICTED_SHARE;
    if table.len() <= keep {
        return;
    }
    let mut by_fullness: Vec<(f64, Instant, IpAddr)> = table
        .iter()
        .map(|(ip, b)| (b.level(now, capacity, per_sec), b.at, *ip))
        .collect();
    let evicted = by_fullness.len() - keep;
    by_fullness.select_nth_unstable_by(evicted - 1, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, _, ip) in &by_fullness[..evicted] {
        table.remove(ip);
    }
}

pub async fn limit(State(state): State<AuthState>, req: Request, next: Next) -> Response {
    let Some((kind, page)) = kind(req.uri().path()) else {
        return next.run(req).await;
    };
    if req.method() == axum::http::Method::OPTIONS {
        return next.run(req).await;
    }
    let limits = &state.settings().rate_limits;
    let rate = match kind {
        Kind::Login => limits.login,
        Kind::Enroll => limits.enroll,
        Kind::Authorize => limits.authorize,
        Kind::Token => limits.token,
    };
    let (Some(rate), Some(ip)) = (
        rate,
        req.extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip()),
    ) else {
        return next.run(req).await;
    };
    match state.0.limiter.take(kind, ip, rate, Instant::now()) {
        Ok(()) => next.run(req).await,
        Err(wait) => too_many(page, wait),
    }
}

fn too_many(page: bool, wait: u64) -> Response {
    let mut r = if page {
        pages::error(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            &format!("Wait {wait} seconds, then try again."),
        )
    } else {
        no_store_json(
            StatusCode::TOO_MANY_REQUESTS,
            json!({
                "error": "too_many_requests",
                "error_description": format!("slow down: retry after {wait} seconds"),
            }),
        )
    };
    if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rates_parse() {
        assert_eq!(
            Rate::parse("10/60").unwrap(),
            Some(Rate {
                requests: 10,
                period_secs: 60
            })
        );
        assert_eq!(Rate::parse("off").unwrap(), None);
        for bad in ["10", "0/60", "10/0", "x/60", "10/100000"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bucket_allows_the_burst_then_refills() {
        let l = Limiter::default();
        let ip: IpAddr = "203.0.113.5".parse().unwrap();
        let other: IpAddr = "203.0.113.6".parse().unwrap();
        let rate = Rate {
            requests: 3,
            period_secs: 30,
        };
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.take(Kind::Login, ip, rate, t0).is_ok());
        }
        assert_eq!(l.take(Kind::Login, ip, rate, t0), Err(10));
        assert!(l.take(Kind::Login, other, rate, t0).is_ok(), "per address");
        assert!(l.take(Kind::Token, ip, rate, t0).is_ok(), "per kind");
        assert!(
            l.take(Kind::Login, ip, rate, t0 + Duration::from_secs(10))
                .is_ok()
        );
        assert!(
            l.take(Kind::Login, ip, rate, t0 + Duration::from_secs(10))
                .is_err()
        );
    }

    fn rate(requests: u32) -> Rate {
        Rate {
            requests,
            period_secs: 3600,
        }
    }

    #[test]
    fn ipv6_clients_share_the_bucket_of_their_64_and_mapped_ipv4_is_ipv4() {
        let l = Limiter::default();
        let t0 = Instant::now();
        let r = rate(2);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(l.take(Kind::Login, ip("2001:db8:1:2::1"), r, t0).is_ok());
        assert!(
            l.take(Kind::Login, ip("2001:db8:1:2:ffff:ffff:ffff:fffe"), r, t0)
                .is_ok()
        );
        assert!(
            l.take(Kind::Login, ip("2001:db8:1:2:8000::7"), r, t0)
                .is_err(),
            "one /64 is one client"
        );
        assert!(
            l.take(Kind::Login, ip("2001:db8:1:3::1"), r, t0).is_ok(),
            "another /64"
        );
        assert!(l.take(Kind::Login, ip("203.0.113.5"), r, t0).is_ok());
        assert!(l.take(Kind::Login, ip("::ffff:203.0.113.5"), r, t0).is_ok());
        assert!(
            l.take(Kind::Login, ip("203.0.113.5"), r, t0).is_err(),
            "a mapped address is its IPv4 address"
        );
        assert!(
            l.take(Kind::Login, ip("203.0.113.4"), r, t0).is_ok(),
            "IPv4 per address"
        );
    }

    #[test]
    fn a_full_table_never_lets_a_new_address_through_untracked_nor_frees_a_limited_one() {
        let l = Limiter::default();
        let t0 = Instant::now();
        let r = rate(3);
        let limited: IpAddr = "198.51.100.77".parse().unwrap();
        for _ in 0..3 {
            assert!(l.take(Kind::Login, limited, r, t0).is_ok());
        }
        assert!(l.take(Kind::Login, limited, r, t0).is_err());
        // A flood of new addresses, each trying once: twice the table's size.
        let flood = |n: u32| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n));
        for n in 0..(2 * MAX_TRACKED as u32) {
            let _ = l.take(Kind::Login, flood(n), r, t0);
        }
        assert!(
            l.take(Kind::Login, limited, r, t0).is_err(),
            "the flood lifted the limit of an address that had used its budget"
        );
        // A new address after the flood is tracked: its burst, then no more.
        let newcomer: IpAddr = "192.0.2.200".parse().unwrap();
        for _ in 0..3 {
            assert!(l.take(Kind::Login, newcomer, r, t0).is_ok());
        }
        assert!(
            l.take(Kind::Login, newcomer, r, t0).is_err(),
            "a new address went through untracked"
        );
    }

    #[test]
    fn the_ipv6_prefix_is_configurable() {
        let t0 = Instant::now();
        let r = rate(1);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let per_48 = Limiter::new(48);
        assert!(per_48.take(Kind::Token, ip("2001:db8:5::1"), r, t0).is_ok());
        assert!(
            per_48
                .take(Kind::Token, ip("2001:db8:5:ffff::1"), r, t0)
                .is_err()
        );
        assert!(per_48.take(Kind::Token, ip("2001:db8:6::1"), r, t0).is_ok());
        let per_address = Limiter::new(128);
        assert!(
            per_address
                .take(Kind::Token, ip("2001:db8::1"), r, t0)
                .is_ok()
        );
        assert!(
            per_address
                .take(Kind::Token, ip("2001:db8::2"), r, t0)
                .is_ok()
        );
        assert!(
            per_address
                .take(Kind::Token, ip("2001:db8::1"), r, t0)
                .is_err()
        );
    }

    #[test]
    fn a_full_table_stays_bounded_and_forgets_refilled_buckets_first() {
        let l = Limiter::default();
        let t0 = Instant::now();
        let r = Rate {
            requests: 2,
            period_secs: 10,
        };
        let addr = |n: u32| IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + n));
        for n in 0..MAX_TRACKED as u32 {
            let _ = l.take(Kind::Token, addr(n), r, t0);
        }
        let table = |l: &Limiter| l.tables[Kind::Token as usize].lock().unwrap().len();
        assert_eq!(table(&l), MAX_TRACKED);
        // Twenty seconds on, every bucket has refilled: one newcomer clears them all.
        let later = t0 + std::time::Duration::from_secs(20);
        assert!(l.take(Kind::Token, addr(u32::MAX / 2), r, later).is_ok());
        assert_eq!(table(&l), 1);
        for n in 0..(3 * MAX_TRACKED as u32) {
            let _ = l.take(Kind::Token, addr(n), r, later);
            assert!(table(&l) <= MAX_TRACKED);
        }
    }
}
