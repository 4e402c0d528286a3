//! Bounded fuzzing of the request parts every listener reads from untrusted clients: cookies,
//! forwarded headers and CIDR ranges. None may panic.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use opentrusty_testkit::fuzz;
use opentrusty_web::cookie;
use opentrusty_web::proxy::{Cidr, ForwardedHeader, TrustedProxies};

#[test]
fn cookies_forwarded_headers_and_cidrs_never_panic() {
    let xff = TrustedProxies::new(vec![
        Cidr::parse("127.0.0.0/8").unwrap(),
        Cidr::parse("::1/128").unwrap(),
    ]);
    let forwarded = xff.clone().with_header(ForwardedHeader::Forwarded);
    let runs = fuzz(
        "headers",
        &[
            b"ot_session=abc; ot_csrf=def",
            b"for=192.0.2.43, for=\"[2001:db8:cafe::17]:4711\";proto=https",
            b"203.0.113.195, 70.41.3.18, 150.172.238.178",
            b"10.0.0.0/8",
        ],
        |b| {
            let text = String::from_utf8_lossy(b);
            let _ = Cidr::parse(&text);
            let Ok(value) = HeaderValue::from_bytes(b) else {
                return;
            };
            let mut headers = HeaderMap::new();
            for name in [
                "cookie",
                "forwarded",
                "x-forwarded-for",
                "x-forwarded-proto",
            ] {
                headers.append(HeaderName::from_static(name), value.clone());
            }
            let _ = cookie(&headers, "ot_session");
            let _ = xff.client("127.0.0.1".parse().unwrap(), &headers);
            let _ = forwarded.client("127.0.0.1".parse().unwrap(), &headers);
            let _ = ForwardedHeader::parse(&text);
        },
    );
    eprintln!("headers: {runs} inputs");
}
