//! Decoding what a request sends: JSON bodies and query strings into typed requests, with each
//! failure naming its field; ids in paths; opaque pagination cursors.

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use uuid::Uuid;

use crate::problem::ApiError;

/// Largest page a list returns, and the page size when none is asked for.
pub const MAX_LIMIT: u32 = 200;
pub const DEFAULT_LIMIT: u32 = 50;

/// Decodes a JSON body into `T`: 415 unless it is JSON, 400 when it is not well-formed, 422
/// naming the field when it does not fit `T`.
pub fn json<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| v == "application/json" || v.ends_with("+json"));
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    // Serde would also read a struct from an array, by position: only objects are requests.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            Ok(_) => Err(ApiError::validation("body", "must be a JSON object")),
            Err(_) => Err(ApiError::BadRequest(
                "the body is not well-formed JSON".to_owned(),
            )),
        };
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| ApiError::BadRequest("the body is not well-formed JSON".to_owned()))?;
    if let Some(field) = nul_in(&value, "") {
        return Err(ApiError::validation(
            field,
            "must not contain NUL characters",
        ));
    }
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let message = e.inner().to_string();
        ApiError::validation(field_name(&e.path().to_string(), &message, "body"), message)
    })
}

/// The path of the first string (or key) holding a NUL character, which no field accepts and
/// PostgreSQL cannot store.
fn nul_in(value: &serde_json::Value, path: &str) -> Option<String> {
    match value {
        serde_json::Value::String(s) if s.contains('\0') => Some(if path.is_empty() {
            "body".to_owned()
        } else {
            path.to_owned()
        }),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_in(v, &format!("{path}[{i}]"))),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
            let here = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            if k.contains('\0') {
                Some(here)
            } else {
                nul_in(v, &here)
            }
        }),
        _ => None,
    }
}

/// Decodes a query string into `T`, naming the parameter at fault.
pub fn query<T: DeserializeOwned>(raw: Option<&str>) -> Result<T, ApiError> {
    let raw = raw.unwrap_or("");
    if let Some((k, _)) = url_pairs(raw).find(|(k, v)| k.contains('\0') || v.contains('\0')) {
        return Err(ApiError::validation(
            k.replace('\0', ""),
            "must not contain NUL characters",
        ));
    }
    let de = serde_urlencoded::Deserializer::new(url_pairs(raw));
    serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
        let message = e.inner().to_string();
        ApiError::validation(
            field_name(&e.path().to_string(), &message, "query"),
            message,
        )
    })
}

/// The field a deserialisation error is about: its path, or for a missing or repeated field
/// (which have no path of their own) the name in the message; `whole` when it is about the
/// input as a whole.
fn field_name(path: &str, message: &str, whole: &str) -> String {
    let named = ["missing field `", "duplicate field `"]
        .iter()
        .find_map(|p| message.strip_prefix(p))
        .and_then(|rest| rest.split('`').next());
    match (named, path) {
        (Some(name), ".") => name.to_owned(),
        (Some(name), parent) => format!("{parent}.{name}"),
        (None, ".") => whole.to_owned(),
        (None, path) => path.to_owned(),
    }
}

fn url_pairs(raw: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(raw.as_bytes())
}

/// Parses an id from the path. A malformed id names nothing that exists: 404.
pub fn id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound)
}

/// The page size asked for: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
pub fn limit(raw: Option<&str>) -> Result<u32, ApiError> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::validation("limit", format!("must be a number from 1 to {MAX_LIMIT}"))
            }),
    }
}

/// A position in a list, handed to clients as an opaque string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// After this id (lists in id order).
    After(Uuid),
    /// Older than this instant (microseconds since the epoch) and id (newest-first lists).
    Before(i64, Uuid),
    /// After this many items (short lists read whole).
    Skip(u32),
}

impl Cursor {
    pub fn encode(&self) -> String {
        let text = match self {
            Cursor::After(id) => format!("a.{}", id.simple()),
            Cursor::Before(at, id) => format!("b.{at}.{}", id.simple()),
            Cursor::Skip(n) => format!("s.{n}"),
        };
        URL_SAFE_NO_PAD.encode(text)
    }

    pub fn decode(raw: &str) -> Result<Cursor, ApiError> {
        let bad = || ApiError::validation("cursor", "is not a cursor this API returned");
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let mut parts = text.split('.');
        let cursor = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("a"), Some(id), None, None) => {
                Cursor::After(Uuid::parse_str(id).map_err(|_| bad())?)
            }
            (Some("s"), Some(n), None, None) => Cursor::Skip(n.parse().map_err(|_| bad())?),
            (Some("b"), Some(at), Some(id), None) => Cursor::Before(
                at.parse().map_err(|_| bad())?,
                Uuid::parse_str(id).map_err(|_| bad())?,
            ),
            _ => return Err(bad()),
        };
        Ok(cursor)
    }

    /// The id an id-ordered list resumes after.
    pub fn after(raw: Option<&str>) -> Result<Option<Uuid>, ApiError> {
        match raw.map(Cursor::decode).transpose()? {
            None => Ok(None),
            Some(Cursor::After(id)) => Ok(Some(id)),
            Some(_) => Err(ApiError::validation("cursor", "belongs to another list")),
        }
    }
}

/// Deserialises a field that may be absent (`None`), `null` (`Some(None)`) or a value.
pub fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let id = Uuid::now_v7();
        for c in [
            Cursor::After(id),
            Cursor::Before(1_700_000_000_000_000, id),
            Cursor::Skip(7),
        ] {
            assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        }
        for bad in ["", "!!", "YQ", "eC4x", &URL_SAFE_NO_PAD.encode("a.nope")] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(limit(None).unwrap(), DEFAULT_LIMIT);
        assert_eq!(limit(Some("200")).unwrap(), 200);
        for bad in ["0", "201", "-1", "x", ""] {
            assert!(limit(Some(bad)).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod fuzz_tests {
    use super::*;
    use crate::views::{AuditQueryParams, CreateClient, UpdateTenant, UserListQuery};

    /// Bodies, query strings and cursors come straight from clients: no panic.
    #[test]
    fn bodies_queries_and_cursors_never_panic() {
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        );
        let runs = opentrusty_testkit::fuzz(
            "admin input",
            &[
                br#"{"client_name":"x","redirect_uris":["https://a.example/cb"],"access_token_ttl":60}"#,
                br#"{"display_name":null,"status":"suspended"}"#,
                b"limit=50&cursor=YS4wMTkzMDAwMA&email_prefix=a&status=active&type=user.created",
            ],
            |b| {
                let _ = json::<CreateClient>(&headers, b);
                let _ = json::<UpdateTenant>(&headers, b);
                let text = String::from_utf8_lossy(b);
                let _ = query::<UserListQuery>(Some(&text));
                let _ = query::<AuditQueryParams>(Some(&text));
                let _ = Cursor::decode(&text);
                let _ = limit(Some(&text));
            },
        );
        eprintln!("admin input: {runs} inputs");
    }
}
