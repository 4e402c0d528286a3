//! Which URIs may be registered for redirects: the rule both the admin plane (registration) and
//! the auth plane (every redirect) apply.

use url::Url;

/// Whether `uri` may be registered as a redirect (or post-logout redirect) URI: absolute, no
/// fragment, no credentials, and `https`, or `http` only on a loopback host (RFC 8252 §7.3).
pub fn is_registrable(uri: &str) -> bool {
    let Ok(url) = Url::parse(uri) else {
        return false;
    };
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return false;
    }
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => is_loopback(&url),
        _ => false,
    }
}

/// Whether the URL's host is a loopback name or address.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}
