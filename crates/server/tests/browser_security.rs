//! Browser security properties of both planes, table by table: cookie attributes, CSRF and
//! Origin checks on every cookie-authenticated write, anti-framing headers on every answer, and
//! no open redirect through `return_to`, `redirect_uri` or `post_logout_redirect_uri`. The
//! tables are checked against the route tables, so a new write route without a row fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod support;

use opentrusty_testkit::TestDb;
use reqwest::Method;
use serde_json::json;
use support::{
    ALICE, Browser, CALLBACK, CONFIDENTIAL, Idp, PASSWORD, Reply, SIGNED_OUT, Server, code_params,
    exchange_code, free_port, http, inputs, pkce,
};

const ROOT: &str = "root@platform.example";
const CONSOLE: &str = "https://console.example";
const EVIL: &str = "https://evil.example";

/// Auth-plane routes answered with POST that a session cookie does not authorize: the client
/// authenticates itself, or the request is a protocol navigation whose cookie SameSite=Lax
/// withholds cross-site. The console's sign-in has no session yet.
const NOT_COOKIE_WRITES: &[&str] = &[
    "/api/v1/auth/login",
    "/oauth2/authorize",
    "/oauth2/introspect",
    "/oauth2/revoke",
    "/oauth2/token",
    "/oauth2/userinfo",
];

/// Auth-plane form posts that act on the browser's cookies (session or CSRF cookie).
const COOKIE_FORMS: &[&str] = &["/login", "/consent", "/password", "/enroll", "/logout"];

async fn start(db: TestDb) -> (Idp, Server) {
    let idp = Idp::start(db).await;
    support::bootstrap_platform_admin(&idp.store, ROOT, PASSWORD).await;
    let mut admin = Server::admin(idp.dir.path(), idp.db.url(), free_port(), &idp.issuer());
    admin.wait_healthy().await;
    (idp, admin)
}

fn is_refusal(r: &Reply) -> bool {
    (r.status == 400 || r.status == 403) && r.location().is_none()
}

/// A page's form as the browser would submit it, with `extra` fields filled in.
fn form_of(page: &Reply, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut form: Vec<(String, String)> = inputs(&page.body).into_iter().collect();
    for (k, v) in extra {
        form.retain(|(name, _)| name != k);
        form.push(((*k).to_owned(), (*v).to_owned()));
    }
    form
}

async fn post_form(
    browser: &Browser,
    url: &str,
    form: &[(String, String)],
    origin: Option<&str>,
) -> Reply {
    let mut req = browser.http.post(url).form(form);
    if let Some(o) = origin {
        req = req.header("Origin", o);
    }
    Reply::read(req.send().await.unwrap()).await
}

/// Posts `form` to `path` three ways that must be refused (foreign Origin with the right token,
/// no token, a wrong token), then as the page would, which must not be refused.
async fn check_form(idp: &Idp, browser: &Browser, path: &str, form: Vec<(String, String)>) {
    let url = idp.url(path);
    let r = post_form(browser, &url, &form, Some(EVIL)).await;
    assert!(
        is_refusal(&r),
        "{path} from {EVIL}: {} {}",
        r.status,
        r.body
    );
    let without: Vec<_> = form
        .iter()
        .filter(|(k, _)| k != "csrf_token")
        .cloned()
        .collect();
    let r = post_form(browser, &url, &without, None).await;
    assert!(is_refusal(&r), "{path} without a token: {}", r.status);
    let mut wrong = without.clone();
    wrong.push(("csrf_token".into(), "A".repeat(43)));
    let r = post_form(browser, &url, &wrong, Some(&idp.issuer())).await;
    assert!(is_refusal(&r), "{path} with a wrong token: {}", r.status);
    let r = post_form(browser, &url, &form, Some(&idp.issuer())).await;
    assert!(
        !is_refusal(&r) && r.status.as_u16() < 500,
        "{path} as the page sends it: {} {}",
        r.status,
        r.body
    );
}

async fn auth_plane_forms_need_their_token_and_origin(idp: &Idp) {
    // Every POST route of the auth plane is either a cookie form below or explicitly not one.
    for (method, path) in opentrusty_auth::route_table() {
        if method == Method::POST && path != "/api/v1/auth/logout" {
            assert!(
                COOKIE_FORMS.contains(&path) || NOT_COOKIE_WRITES.contains(&path),
                "POST {path} has no row in the CSRF table"
            );
        }
    }
    let browser = Browser::new(idp);
    let (challenge, _) = pkce();
    let start = idp.authorize_url(&code_params(CONFIDENTIAL, "openid", "csrf", &challenge));
    let login = browser.get(start.as_str()).await;
    let login = browser.get(browser.see_other(&login).as_str()).await;
    let form = form_of(&login, &[("email", ALICE), ("password", PASSWORD)]);
    check_form(idp, &browser, "/login", form).await;

    // Consent may be remembered from earlier tables: ask for it again.
    let mut again = code_params(CONFIDENTIAL, "openid", "csrf", &challenge);
    again.push(("prompt", "consent"));
    let consent = browser.get(idp.authorize_url(&again).as_str()).await;
    let consent = browser.get(browser.see_other(&consent).as_str()).await;
    assert!(consent.body.contains("decision"), "{}", consent.body);
    let form = form_of(&consent, &[("decision", "approve")]);
    check_form(idp, &browser, "/consent", form).await;

    let page = browser.get(&idp.url("/password")).await;
    let form = form_of(
        &page,
        &[
            ("current_password", PASSWORD),
            ("password", "a brand new passphrase 42"),
            ("password_confirm", "a brand new passphrase 42"),
        ],
    );
    check_form(idp, &browser, "/password", form).await;

    let (_, token) = idp.invite("csrf-invitee@acme.example", None).await;
    let invitee = Browser::new(idp);
    let page = invitee
        .get(&idp.url(&format!("/enroll?token={token}")))
        .await;
    let form = form_of(
        &page,
        &[
            ("password", "the invitee's own passphrase"),
            ("password_confirm", "the invitee's own passphrase"),
        ],
    );
    check_form(idp, &invitee, "/enroll", form).await;

    let page = browser.get(&idp.url("/logout")).await;
    let form = form_of(&page, &[]);
    check_form(idp, &browser, "/logout", form).await;

    // The console's sign-out has no token: a foreign or opaque Origin is refused.
    for origin in [EVIL, "null"] {
        let r = http()
            .post(idp.url("/api/v1/auth/logout"))
            .header("Origin", origin)
            .header("cookie", "ot_session=whatever")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "console sign-out from {origin}");
    }
}

/// Signs in on the console: the session cookie and its CSRF token.
async fn console_session(idp: &Idp) -> (String, String) {
    support::console_sign_in(&idp.url(""), ROOT, PASSWORD).await
}

/// Every admin route that writes refuses a cookie request without the CSRF header, with a
/// wrong one, or from a foreign origin; with the header and the console's origin the same
/// request gets past the check (whatever the route then says about the made-up ids).
async fn admin_writes_need_the_csrf_header_and_a_console_origin(idp: &Idp, admin: &Server) {
    let (session, csrf) = console_session(idp).await;
    let mut writes = 0;
    for (method, path) in opentrusty_admin::route_table() {
        if matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
            continue;
        }
        writes += 1;
        let concrete: String = path
            .split('/')
            .map(|seg| {
                if seg.starts_with('{') {
                    uuid::Uuid::now_v7().to_string()
                } else {
                    seg.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let send = |csrf: Option<&str>, origin: Option<&str>| {
            let mut req = http()
                .request(method.clone(), admin.url(&concrete))
                .header("cookie", format!("ot_session={session}"))
                .json(&json!({}));
            if let Some(c) = csrf {
                req = req.header("x-csrf-token", c);
            }
            if let Some(o) = origin {
                req = req.header("Origin", o);
            }
            async move {
                let r = req.send().await.unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            }
        };
        for (csrf, origin, case) in [
            (None, None, "no token"),
            (Some("wrong-token"), None, "a wrong token"),
            (Some(csrf.as_str()), Some(EVIL), "a foreign origin"),
            (Some(csrf.as_str()), Some("null"), "an opaque origin"),
        ] {
            let (status, body) = send(csrf, origin).await;
            assert_eq!(status, 403, "{method} {path} with {case}: {body}");
        }
        let (status, body) = send(Some(&csrf), Some(CONSOLE)).await;
        assert_ne!(status, 403, "{method} {path} from the console: {body}");
        assert!(status < 500, "{method} {path}: {status} {body}");
    }
    assert!(writes >= 15, "only {writes} admin writes found");
}

fn assert_not_framable(what: &str, h: &reqwest::header::HeaderMap) {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    assert_eq!(get("x-frame-options"), "DENY", "{what}");
    assert!(
        get("content-security-policy").contains("frame-ancestors 'none'"),
        "{what}: {:?}",
        h.get("content-security-policy")
    );
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
}

async fn no_answer_may_be_framed(idp: &Idp, admin: &Server) {
    let (challenge, _) = pkce();
    let authorize = idp.authorize_url(&code_params(CONFIDENTIAL, "openid", "f", &challenge));
    let auth_paths = [
        authorize.as_str().to_owned(),
        idp.url("/login?return_to=%2Foauth2%2Fauthorize"),
        idp.url("/logout"),
        idp.url("/password"),
        idp.url("/enroll?token=not-a-token"),
        idp.url("/oauth2/authorize?client_id=nobody"),
        idp.url("/.well-known/openid-configuration"),
        idp.url("/.well-known/jwks.json"),
        idp.url("/oauth2/userinfo"),
        idp.url("/no/such/page"),
        idp.url("/health"),
    ];
    for url in auth_paths {
        let r = http().get(&url).send().await.unwrap();
        assert_not_framable(&url, r.headers());
    }
    let r = http()
        .post(idp.url("/oauth2/token"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_not_framable("token error", r.headers());
    for path in [
        "/api/v1/openapi.json",
        "/api/v1/tenants",
        "/api/v1/auth/me",
        "/no/such/route",
    ] {
        let r = http().get(admin.url(path)).send().await.unwrap();
        assert_not_framable(path, r.headers());
    }
}

fn cookie_attributes(set_cookie: &str) -> Vec<String> {
    set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect()
}

fn assert_cookie(set_cookie: &str, secure: bool) {
    let attrs = cookie_attributes(set_cookie);
    for needed in ["httponly", "samesite=lax", "path=/"] {
        assert!(
            attrs.iter().any(|a| a == needed),
            "{needed} missing: {set_cookie}"
        );
    }
    assert_eq!(
        attrs.iter().any(|a| a == "secure"),
        secure,
        "Secure exactly when the issuer is https: {set_cookie}"
    );
}

/// Every cookie either plane sets, on an http issuer (no `Secure`, so local development works)
/// and an https one (`Secure`).
async fn cookies_are_http_only_same_site_and_secure_on_https(idp: &Idp) {
    let browser = Browser::new(idp);
    let (challenge, _) = pkce();
    let start = idp.authorize_url(&code_params(CONFIDENTIAL, "openid", "c", &challenge));
    let r = browser.get(start.as_str()).await;
    let page = browser.get(browser.see_other(&r).as_str()).await;
    let mut seen = page.set_cookies();
    let form = form_of(&page, &[("email", ALICE), ("password", PASSWORD)]);
    let r = post_form(&browser, &idp.url("/login"), &form, None).await;
    seen.extend(r.set_cookies());
    let r = http()
        .post(idp.url("/api/v1/auth/login"))
        .json(&json!({ "email": ROOT, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    seen.extend(
        r.headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned()),
    );
    let names: Vec<&str> = seen.iter().filter_map(|c| c.split('=').next()).collect();
    assert!(
        names.contains(&"ot_csrf") && names.contains(&"ot_session"),
        "{seen:?}"
    );
    for c in &seen {
        assert_cookie(c, false);
    }

    // The same server behind TLS (an https issuer): every cookie is Secure.
    let port = free_port();
    let mut tls = Server::auth_with(
        idp.dir.path(),
        idp.db.url(),
        port,
        &[("OPENTRUSTY_ISSUER", "https://idp.example")],
    );
    tls.wait_healthy().await;
    let r = http()
        .post(tls.url("/api/v1/auth/login"))
        .header("Origin", "https://idp.example")
        .json(&json!({ "email": ROOT, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut secure: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let r = http().get(tls.url("/logout")).send().await.unwrap();
    secure.extend(
        r.headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned()),
    );
    assert!(secure.len() >= 2, "{secure:?}");
    for c in &secure {
        assert_cookie(c, true);
    }
}

/// Follows redirects by hand from `url`; every `Location` must stay on the issuer or be a
/// registered redirect URI of the client. Returns the last answer.
async fn follow(idp: &Idp, browser: &Browser, mut reply: Reply, what: &str) -> Reply {
    for _ in 0..8 {
        let Some(location) = reply.location() else {
            return reply;
        };
        let to = browser.resolve(location);
        let here = to.origin() == browser.resolve("/").origin();
        let registered = [CALLBACK, SIGNED_OUT].iter().any(|r| {
            let r = reqwest::Url::parse(r).unwrap();
            to.origin() == r.origin() && to.path() == r.path()
        });
        assert!(here || registered, "{what} redirected to {to}");
        if !here {
            return reply;
        }
        reply = browser.get(to.as_str()).await;
    }
    let _ = idp;
    reply
}

/// Ways to write a URL that is not the registered one.
fn lookalikes(registered: &str) -> Vec<String> {
    let without_scheme = registered.trim_start_matches("http://");
    vec![
        format!("{EVIL}/cb"),
        format!("{registered}/../evil"),
        format!("{registered}/x"),
        format!("{registered}x"),
        format!("{registered}?next={EVIL}"),
        format!("{registered}#frag"),
        registered.to_uppercase(),
        format!("http://user@{without_scheme}"),
        format!(
            "http://{}@evil.example/",
            without_scheme.split('/').next().unwrap()
        ),
        format!("//{without_scheme}"),
        format!("https://{without_scheme}"),
        registered.replace("127.0.0.1", "127.1"),
        format!("{registered}%2F..%2Fevil"),
        format!(" {registered}"),
        "javascript:alert(1)".to_owned(),
    ]
}

async fn nothing_redirects_off_the_registered_uris(idp: &Idp) {
    // redirect_uri: each lookalike gets an error page, never a redirect.
    for bad in lookalikes(CALLBACK) {
        let (challenge, _) = pkce();
        let mut params = code_params(CONFIDENTIAL, "openid", "r", &challenge);
        params.retain(|(k, _)| *k != "redirect_uri");
        params.push(("redirect_uri", bad.as_str()));
        let r = Browser::new(idp)
            .get(idp.authorize_url(&params).as_str())
            .await;
        assert!(
            r.status == 400 && r.location().is_none(),
            "redirect_uri {bad}"
        );
    }

    // return_to: signing in with a valid form never leads off the issuer.
    let browser = Browser::new(idp);
    let (challenge, _) = pkce();
    let start = idp.authorize_url(&code_params(CONFIDENTIAL, "openid", "rt", &challenge));
    let r = browser.get(start.as_str()).await;
    let page = browser.get(browser.see_other(&r).as_str()).await;
    let mut returns: Vec<String> = vec![
        "//evil.example/x".into(),
        "/\\evil.example/x".into(),
        "\\\\evil.example".into(),
        "/%2F%2Fevil.example".into(),
        "http:evil.example".into(),
        "https://evil.example/oauth2/authorize".into(),
        "/oauth2/authorize/../../evil".into(),
        "javascript:alert(1)".into(),
    ];
    let mut evil_redirect = code_params(CONFIDENTIAL, "openid", "rt", &challenge);
    evil_redirect.retain(|(k, _)| *k != "redirect_uri");
    evil_redirect.push(("redirect_uri", "https://evil.example/cb"));
    let evil_authorize = idp.authorize_url(&evil_redirect);
    returns.push(format!(
        "{}?{}",
        evil_authorize.path(),
        evil_authorize.query().unwrap()
    ));
    for bad in &returns {
        let get =
            reqwest::Url::parse_with_params(&idp.url("/login"), [("return_to", bad)]).unwrap();
        let r = browser.get(get.as_str()).await;
        follow(idp, &browser, r, &format!("GET /login return_to={bad}")).await;
        let form = form_of(
            &page,
            &[
                ("email", ALICE),
                ("password", PASSWORD),
                ("return_to", bad.as_str()),
            ],
        );
        let r = post_form(&browser, &idp.url("/login"), &form, None).await;
        follow(idp, &browser, r, &format!("POST /login return_to={bad}")).await;
    }

    // post_logout_redirect_uri: lookalikes of the registered one end on a page of ours; the
    // registered one itself redirects (the check above would catch any other target).
    let (challenge, verifier) = pkce();
    let url = idp.authorize_url(&code_params(CONFIDENTIAL, "openid", "lo", &challenge));
    let code = browser.journey(url, Some((ALICE, PASSWORD))).await.code();
    let tokens = exchange_code(idp, CONFIDENTIAL, &code, Some(&verifier)).await;
    let id_token = tokens.json["id_token"].as_str().unwrap().to_owned();
    for bad in lookalikes(SIGNED_OUT) {
        let url = reqwest::Url::parse_with_params(
            &idp.url("/oauth2/logout"),
            [
                ("id_token_hint", id_token.as_str()),
                ("client_id", CONFIDENTIAL.client_id),
                ("post_logout_redirect_uri", bad.as_str()),
            ],
        )
        .unwrap();
        let r = browser.get(url.as_str()).await;
        assert!(r.location().is_none(), "post_logout_redirect_uri {bad}");
        assert!(r.status.as_u16() < 500);
    }
    let url = reqwest::Url::parse_with_params(
        &idp.url("/oauth2/logout"),
        [
            ("id_token_hint", id_token.as_str()),
            ("post_logout_redirect_uri", SIGNED_OUT),
        ],
    )
    .unwrap();
    let r = browser.get(url.as_str()).await;
    let r = follow(idp, &browser, r, "registered post_logout_redirect_uri").await;
    assert!(r.location().unwrap().starts_with(SIGNED_OUT));
}

async fn browser_security(db: TestDb) {
    let (idp, admin) = start(db).await;
    cookies_are_http_only_same_site_and_secure_on_https(&idp).await;
    no_answer_may_be_framed(&idp, &admin).await;
    admin_writes_need_the_csrf_header_and_a_console_origin(&idp, &admin).await;
    nothing_redirects_off_the_registered_uris(&idp).await;
    auth_plane_forms_need_their_token_and_origin(&idp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_security_on_sqlite() {
    browser_security(TestDb::sqlite(true).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_security_on_postgres() {
    if let Some(db) = TestDb::postgres(true).await {
        browser_security(db).await;
    }
}
