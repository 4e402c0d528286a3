//! Server-rendered pages: sign-in, consent, sign-out and errors. Plain semantic HTML with no
//! script at all, served under a strict Content-Security-Policy that also forbids framing.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; \
                   frame-ancestors 'none'; base-uri 'none'";

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:26rem;margin:3rem auto;\
padding:0 1rem;line-height:1.5;color:#1b1b1f}label{display:block;margin-top:1rem;font-weight:600}\
input{width:100%;box-sizing:border-box;padding:.6rem;font-size:1rem;margin-top:.25rem}\
button{margin-top:1.25rem;padding:.6rem 1.2rem;font-size:1rem}\
.error{background:#fdecea;border:1px solid #c62828;padding:.75rem;border-radius:4px}";

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            _ => out.push(c),
        }
    }
    out
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
        escape(title)
    );
    let mut r = (status, Html(html)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        escape(name),
        escape(value)
    )
}

/// An error the user can act on; never a redirect.
pub fn error(status: StatusCode, title: &str, message: &str) -> Response {
    let mut r = page(
        status,
        title,
        &format!(
            "<h1>{}</h1><p>{}</p><p>Go back to the application you came from and try again.</p>",
            escape(title),
            escape(message)
        ),
    );
    // Unavailable means "later": say when, as every other 503 of the planes does.
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    r
}

/// How a tenant's pages look: its name, and optionally a logo and an accent colour (both
/// validated when set: an https URL and `#rrggbb`).
#[derive(Debug, Clone, Default)]
pub struct Branding {
    pub name: Option<String>,
    pub logo_url: Option<String>,
    pub accent_color: Option<String>,
}

impl Branding {
    fn header(&self) -> String {
        let logo = match (&self.logo_url, &self.name) {
            (Some(url), name) => format!(
                "<img src=\"{}\" alt=\"{}\" height=\"48\">",
                escape(url),
                escape(name.as_deref().unwrap_or(""))
            ),
            _ => String::new(),
        };
        let accent = self
            .accent_color
            .as_deref()
            .filter(|c| {
                c.len() == 7 && c.starts_with('#') && c[1..].bytes().all(|b| b.is_ascii_hexdigit())
            })
            .map(|c| {
                format!(
                    "<style>button{{background:{c};color:#fff;border:0;border-radius:4px}}</style>"
                )
            })
            .unwrap_or_default();
        format!("{accent}{logo}")
    }
}

pub fn login(
    status: StatusCode,
    csrf: &str,
    return_to: &str,
    branding: &Branding,
    message: Option<&str>,
    email: &str,
) -> Response {
    let alert = message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(m)))
        .unwrap_or_default();
    let heading = match &branding.name {
        Some(n) => format!("Sign in to {n}"),
        None => "Sign in".to_owned(),
    };
    page(
        status,
        "Sign in",
        &format!(
            "{}<h1>{}</h1>{alert}<form method=\"post\" action=\"/login\">{}{}\
             <label for=\"email\">Email</label>\
             <input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" value=\"{}\" required autofocus>\
             <label for=\"password\">Password</label>\
             <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
             <button type=\"submit\">Sign in</button></form>",
            branding.header(),
            escape(&heading),
            hidden("csrf_token", csrf),
            hidden("return_to", return_to),
            escape(email),
        ),
    )
}

pub fn consent(
    csrf: &str,
    request: &str,
    client_name: &str,
    scopes: &[&str],
    branding: &Branding,
) -> Response {
    let items: String = scopes
        .iter()
        .map(|s| format!("<li>{}</li>", escape(scope_label(s))))
        .collect();
    page(
        StatusCode::OK,
        "Allow access",
        &format!(
            "{}<h1>Allow {} to access your account?</h1><p>It asks to:</p><ul>{items}</ul>\
             <form method=\"post\" action=\"/consent\">{}{}\
             <button type=\"submit\" name=\"decision\" value=\"approve\">Allow</button> \
             <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
            branding.header(),
            escape(client_name),
            hidden("csrf_token", csrf),
            hidden("request", request),
        ),
    )
}

fn scope_label(scope: &str) -> &str {
    match scope {
        "openid" => "Know who you are",
        "profile" => "See your name",
        "email" => "See your email address",
        "offline_access" => "Keep access while you are away",
        other => other,
    }
}

/// Asks whether to sign out; `carried` is the logout request the form takes on to `/logout`.
pub fn logout_confirm(csrf: &str, carried: &[(&str, &str)]) -> Response {
    let fields: String = carried.iter().map(|(k, v)| hidden(k, v)).collect();
    page(
        StatusCode::OK,
        "Sign out",
        &format!(
            "<h1>Sign out?</h1><p>Signing out ends your session here, for every application \
             you signed in to with it.</p><form method=\"post\" action=\"/logout\">{}{fields}\
             <button type=\"submit\">Sign out</button></form>",
            hidden("csrf_token", csrf)
        ),
    )
}

/// The page where a user sets a password from an enrollment or reset link.
pub fn enroll(
    status: StatusCode,
    csrf: &str,
    token: &str,
    email: &str,
    message: Option<&str>,
    branding: &Branding,
) -> Response {
    let alert = message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(m)))
        .unwrap_or_default();
    page(
        status,
        "Set your password",
        &format!(
            "{}<h1>Set your password</h1><p>For {}{}. Use at least 10 characters; a passphrase of \
             a few words is easy to remember and hard to guess.</p>{alert}\
             <form method=\"post\" action=\"/enroll\">{}{}\
             <input type=\"hidden\" name=\"username\" value=\"{}\" autocomplete=\"username\">\
             <label for=\"password\">New password</label>\
             <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"new-password\" \
             minlength=\"10\" maxlength=\"256\" required autofocus>\
             <label for=\"password_confirm\">New password, again</label>\
             <input id=\"password_confirm\" name=\"password_confirm\" type=\"password\" \
             autocomplete=\"new-password\" minlength=\"10\" maxlength=\"256\" required>\
             <button type=\"submit\">Set password</button></form>",
            branding.header(),
            escape(email),
            branding
                .name
                .as_deref()
                .map(|n| format!(" at {}", escape(n)))
                .unwrap_or_default(),
            hidden("csrf_token", csrf),
            hidden("token", token),
            escape(email),
        ),
    )
}

/// The page where a signed-in user changes their password.
pub fn change_password(
    status: StatusCode,
    csrf: &str,
    email: &str,
    message: Option<&str>,
) -> Response {
    let alert = message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(m)))
        .unwrap_or_default();
    page(
        status,
        "Change your password",
        &format!(
            "<h1>Change your password</h1><p>Signed in as {}.</p>{alert}\
             <form method=\"post\" action=\"/password\">{}\
             <input type=\"hidden\" name=\"username\" value=\"{}\" autocomplete=\"username\">\
             <label for=\"current_password\">Current password</label>\
             <input id=\"current_password\" name=\"current_password\" type=\"password\" \
             autocomplete=\"current-password\" required autofocus>\
             <label for=\"password\">New password</label>\
             <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"new-password\" \
             minlength=\"10\" maxlength=\"256\" required>\
             <label for=\"password_confirm\">New password, again</label>\
             <input id=\"password_confirm\" name=\"password_confirm\" type=\"password\" \
             autocomplete=\"new-password\" minlength=\"10\" maxlength=\"256\" required>\
             <button type=\"submit\">Change password</button></form>",
            escape(email),
            hidden("csrf_token", csrf),
            escape(email),
        ),
    )
}

pub fn password_changed() -> Response {
    page(
        StatusCode::OK,
        "Password changed",
        "<h1>Your password is changed</h1><p>Use it from now on. Your other sessions have been \
         signed out.</p>",
    )
}

pub fn enrolled() -> Response {
    page(
        StatusCode::OK,
        "Password set",
        "<h1>Your password is set</h1><p>You can now sign in to your applications with your \
         email address and the new password. Any other session of yours has been signed out.</p>",
    )
}

pub fn signed_out() -> Response {
    page(
        StatusCode::OK,
        "Signed out",
        "<h1>You are signed out</h1><p>You can close this window.</p>",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#x27;&amp;&#x27;&lt;/a&gt;"
        );
    }
}
