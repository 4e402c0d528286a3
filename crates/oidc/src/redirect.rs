//! Redirect URIs: which ones may be registered, and building redirects with parameters.

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

/// `base` with `params` appended to its query (existing query parameters are kept).
pub fn with_params(base: &str, params: &[(&str, &str)]) -> String {
    match Url::parse(base) {
        Ok(mut url) => {
            {
                let mut q = url.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
            }
            url.to_string()
        }
        // Only validated, registered URIs reach here; fall back to plain encoding anyway.
        Err(_) => {
            let query: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params)
                .finish();
            let sep = if base.contains('?') { '&' } else { '?' };
            format!("{base}{sep}{query}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrable_uris() {
        for ok in [
            "https://app.example.com/cb",
            "https://app.example.com/cb?x=1",
            "http://127.0.0.1:9/callback",
            "http://localhost/cb",
            "http://[::1]:8080/cb",
        ] {
            assert!(is_registrable(ok), "{ok}");
        }
        for bad in [
            "http://app.example.com/cb",
            "https://app.example.com/cb#frag",
            "https://user:pw@app.example.com/cb",
            "javascript:alert(1)",
            "/relative",
            "com.example.app:/cb",
            "",
        ] {
            assert!(!is_registrable(bad), "{bad}");
        }
    }

    #[test]
    fn params_are_encoded() {
        assert_eq!(
            with_params(
                "https://a.example/cb?x=1",
                &[("code", "a b&c"), ("state", "s")]
            ),
            "https://a.example/cb?x=1&code=a+b%26c&state=s"
        );
    }
}
