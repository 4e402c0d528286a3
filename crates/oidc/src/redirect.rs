//! Redirect URIs: which ones may be registered, and building redirects with parameters.

use url::Url;

pub use opentrusty_core::uri::{is_loopback, is_registrable};

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
