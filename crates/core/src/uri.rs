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

/// Whether `origin` may be registered as a web origin of a browser-based client: exactly the
/// serialisation browsers send in `Origin` (`scheme://host[:port]`, lowercase, no path, no
/// trailing slash), `https`, or `http` only on a loopback host.
pub fn is_registrable_origin(origin: &str) -> bool {
    let Ok(url) = Url::parse(origin) else {
        return false;
    };
    let allowed_scheme = match url.scheme() {
        "https" => url.host().is_some(),
        "http" => is_loopback(&url),
        _ => false,
    };
    allowed_scheme && url.origin().ascii_serialization() == origin
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_origins_are_exact_serialisations() {
        for good in [
            "https://app.example",
            "https://app.example:8443",
            "http://localhost:3000",
            "http://127.0.0.1:5173",
        ] {
            assert!(is_registrable_origin(good), "{good}");
        }
        for bad in [
            "https://app.example/",
            "https://app.example/cb",
            "https://APP.example",
            "https://app.example:443",
            "http://app.example",
            "https://user@app.example",
            "null",
            "*",
            "file:///etc/passwd",
            "",
        ] {
            assert!(!is_registrable_origin(bad), "{bad}");
        }
    }
}
