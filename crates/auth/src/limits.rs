//! Rate limits per client address on the endpoints worth guessing at: sign-in, enrollment,
//! authorization and token requests. Token buckets in this process's memory, keyed by the client
//! address the edge layer derived (trusted-proxy rules applied). Over the limit: 429 with
//! `Retry-After`, as a page or as JSON depending on the endpoint.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
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
}

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
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Login,
    Enroll,
    Authorize,
    Token,
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
    at: Instant,
}

/// Most addresses tracked per kind; beyond it (a flood from countless addresses) requests are
/// let through untracked rather than letting the table grow without bound.
const MAX_TRACKED: usize = 100_000;

#[derive(Default)]
pub struct Limiter {
    buckets: Mutex<HashMap<(Kind, IpAddr), Bucket>>,
}

impl Limiter {
    /// Takes one token for `ip`; `Err(seconds)` to wait when there is none.
    fn take(&self, kind: Kind, ip: IpAddr, rate: Rate, now: Instant) -> Result<(), u64> {
        let capacity = f64::from(rate.requests);
        let per_sec = capacity / f64::from(rate.period_secs);
        let Ok(mut map) = self.buckets.lock() else {
            return Ok(());
        };
        if map.len() >= MAX_TRACKED && !map.contains_key(&(kind, ip)) {
            // Forget buckets that have refilled: they hold no information.
            map.retain(|_, b| {
                b.tokens + now.duration_since(b.at).as_secs_f64() * per_sec < capacity
            });
            if map.len() >= MAX_TRACKED {
                return Ok(());
            }
        }
        let b = map.entry((kind, ip)).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * per_sec).min(capacity);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / per_sec).ceil().max(1.0) as u64)
        }
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
}
