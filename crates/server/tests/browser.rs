//! The sign-in experience in a real browser: Debian's Chromium, headless, driven through
//! chromedriver's WebDriver protocol against the real `serve auth` process. A user opens an
//! authorization URL, signs in, approves consent and lands on the application's callback with a
//! code the test exchanges; a wrong password shows the error; an enrollment link sets a password
//! that then signs in; a single-page application redeems its code and calls UserInfo from its
//! own origin (CORS), and the same page at another origin is refused by the browser. A
//! screenshot of each page is saved under `target/browser-screenshots/`.
//! `.ci/run` installs `chromium` and `chromium-driver` when they are missing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod support;

use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use opentrusty_core::audit::Origin;
use opentrusty_core::client::{NewClient, TokenEndpointAuthMethod, client_secret_digest};
use opentrusty_testkit::TestDb;
use serde_json::{Value, json};
use support::{ALICE, Idp, PASSWORD, free_port, http, pkce};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one headless Chromium session.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    shots: std::path::PathBuf,
}

impl Browser {
    async fn start() -> Browser {
        for tool in ["chromium", "chromedriver"] {
            assert!(
                Command::new("sh")
                    .args(["-c", &format!("command -v {tool}")])
                    .output()
                    .is_ok_and(|o| o.status.success()),
                "{tool} is missing: install Debian's chromium and chromium-driver (.ci/run does)"
            );
        }
        let port = free_port();
        // Its own process group, so the browser processes it starts can be ended with it.
        let driver = Command::new("chromedriver")
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while http().get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=414,896"],
            },
        }}});
        let r: Value = http()
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {r}"))
            .to_owned();
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let shots = std::env::var_os("CARGO_TARGET_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| root.join("target"))
            .join("browser-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        Browser {
            driver,
            base,
            session,
            shots,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = http().request(method, url);
        req = req.json(&body.unwrap_or(json!({})));
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        v["value"].clone()
    }

    async fn open(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn element(&self, css: &str) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        match v[ELEMENT].as_str() {
            Some(id) => id.to_owned(),
            None => panic!("no {css} on the page: {v}\n{}", self.source().await),
        }
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let e = self.element(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{e}/click"), None)
            .await;
    }

    async fn screenshot(&self, name: &str) {
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    /// Waits until the page's URL satisfies `done`.
    async fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let url = self.url().await;
            if done(&url) {
                return url;
            }
            assert!(
                Instant::now() < deadline,
                "never reached {what}; at {url}\n{}",
                self.source().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // End the session (Chromium quits), then whatever is left of the process group.
        use std::io::{Read as _, Write as _};
        let addr = self.base.trim_start_matches("http://");
        if let Ok(mut stream) = std::net::TcpStream::connect(addr) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = write!(
                stream,
                "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
                self.session
            );
            let _ = stream.read_to_end(&mut Vec::new());
        }
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.wait();
    }
}

/// A one-page application at a loopback address: the callback the browser lands on.
async fn application() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/callback",
            axum::routing::get(|| async {
                axum::response::Html("<!doctype html><title>App</title><h1>Signed in</h1>")
            }),
        );
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/callback")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_consents_enrolls_and_signs_in_again_in_chromium() {
    let idp = Idp::start_with(TestDb::sqlite(true).await, &[]).await;
    let callback = application().await;
    let secret = "browser-app-secret-1d9c";
    let mut new = NewClient::new(
        idp.seed.tenant_a,
        "browser-app",
        "Browser App",
        TokenEndpointAuthMethod::ClientSecretBasic,
        Some(client_secret_digest(secret)),
    );
    new.redirect_uris = vec![callback.clone()];
    idp.store
        .create_client(&new, &Origin::system())
        .await
        .unwrap();
    let browser = Browser::start().await;
    let authorize = |challenge: &str| {
        idp.authorize_url(&[
            ("client_id", "browser-app"),
            ("redirect_uri", callback.as_str()),
            ("response_type", "code"),
            ("scope", "openid email"),
            ("state", "browser-state"),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
        ])
        .to_string()
    };

    // Sign in, consent, land on the application with a code.
    let (challenge, verifier) = pkce();
    browser.open(&authorize(&challenge)).await;
    browser
        .wait_for("the sign-in page", |u| u.contains("/login"))
        .await;
    assert!(browser.source().await.contains("<label for=\"email\">"));
    browser.screenshot("1-login").await;
    browser.type_into("#email", ALICE).await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser
        .wait_for("the consent page", |u| u.contains("/consent"))
        .await;
    browser.screenshot("2-consent").await;
    browser.click("button[value=approve]").await;
    let landed = browser
        .wait_for("the callback", |u| u.starts_with(&callback))
        .await;
    browser.screenshot("3-callback").await;
    let query: std::collections::HashMap<String, String> = url::Url::parse(&landed)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(query["state"], "browser-state");
    let r = http()
        .post(idp.url("/oauth2/token"))
        .basic_auth("browser-app", Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", query["code"].as_str()),
            ("redirect_uri", callback.as_str()),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let tokens: Value = r.json().await.unwrap();
    assert!(tokens["id_token"].is_string());

    // A wrong password shows the error on the sign-in page (a fresh browser session: cookies
    // of the first sign-in would skip the page).
    let browser = Browser::start().await;
    let (challenge, _) = pkce();
    browser.open(&authorize(&challenge)).await;
    browser
        .wait_for("the sign-in page", |u| u.contains("/login"))
        .await;
    browser.type_into("#email", ALICE).await;
    browser
        .type_into("#password", "not the password at all")
        .await;
    browser.click("button[type=submit]").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !browser.source().await.contains("role=\"alert\"") {
        assert!(Instant::now() < deadline, "{}", browser.source().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(browser.source().await.contains("Invalid email or password"));
    assert!(
        browser
            .source()
            .await
            .contains(&format!("value=\"{ALICE}\"")),
        "the email stays typed in after a failure"
    );
    browser.screenshot("4-wrong-password").await;
    // The right password then: Alice approved this application above, so the sign-in's own
    // answer takes the browser to the application (a cross-origin redirect after the form).
    browser.type_into("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    let landed = browser
        .wait_for("the callback after sign-in", |u| u.starts_with(&callback))
        .await;
    assert!(landed.contains("code="), "{landed}");

    // An enrollment link sets a password, which then signs in.
    let email = "carol@acme.example";
    let (_, token) = idp.invite(email, Some("Carol")).await;
    let browser = Browser::start().await;
    browser
        .open(&idp.url(&format!("/enroll?token={token}")))
        .await;
    browser
        .wait_for("the enrollment page", |u| u.contains("/enroll"))
        .await;
    assert!(browser.source().await.contains(email));
    browser.screenshot("5-enroll").await;
    let new_password = "carol's brand new passphrase";
    browser.type_into("#password", new_password).await;
    browser.type_into("#password_confirm", new_password).await;
    browser.click("button[type=submit]").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !browser.source().await.contains("Your password is set") {
        assert!(Instant::now() < deadline, "{}", browser.source().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.screenshot("6-enrolled").await;
    let (challenge, _) = pkce();
    browser.open(&authorize(&challenge)).await;
    browser
        .wait_for("the sign-in page", |u| u.contains("/login"))
        .await;
    browser.type_into("#email", email).await;
    browser.type_into("#password", new_password).await;
    browser.click("button[type=submit]").await;
    browser
        .wait_for("the consent page", |u| u.contains("/consent"))
        .await;
    browser.click("button[value=approve]").await;
    browser
        .wait_for("the callback", |u| u.starts_with(&callback))
        .await;
    browser.screenshot("7-new-password-signed-in").await;
}

/// A single-page application served from `http://127.0.0.1:<port>`: its callback page redeems
/// the code it is given with `verifier` at the token endpoint and calls UserInfo with the
/// access token, all from the page's own origin (CORS), and writes what happened into `#out`.
/// Its origin, without a path.
async fn single_page_app(issuer: String, client_id: &'static str, verifier: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let config = json!({
        "token": format!("{issuer}/oauth2/token"),
        "userinfo": format!("{issuer}/oauth2/userinfo"),
        "redirect_uri": format!("{origin}/callback"),
        "client_id": client_id,
        "verifier": verifier,
    });
    let page = format!(
        r#"<!doctype html><title>SPA</title><pre id="out">working</pre><script>
const config = {config};
(async () => {{
  const out = document.getElementById("out");
  try {{
    const code = new URLSearchParams(location.search).get("code") || "none";
    const r = await fetch(config.token, {{ method: "POST", body: new URLSearchParams({{
      grant_type: "authorization_code", code, redirect_uri: config.redirect_uri,
      client_id: config.client_id, code_verifier: config.verifier }}) }});
    const tokens = await r.json();
    if (!tokens.access_token) {{ out.textContent = "token-error:" + tokens.error; return; }}
    const u = await fetch(config.userinfo,
      {{ headers: {{ Authorization: "Bearer " + tokens.access_token }} }});
    const info = await u.json();
    out.textContent = "signed-in:" + info.email;
  }} catch (e) {{ out.textContent = "blocked:" + e.name; }}
}})();
</script>"#
    );
    tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/callback",
            axum::routing::get(move || async move { axum::response::Html(page) }),
        );
        let _ = axum::serve(listener, app).await;
    });
    origin
}

/// Waits until the page's `#out` says something other than "working"; what it says.
async fn outcome(browser: &Browser) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let source = browser.source().await;
        if let Some(rest) = source.split("<pre id=\"out\">").nth(1) {
            let text = rest.split("</pre>").next().unwrap_or_default();
            if text != "working" {
                return text.to_owned();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the page never finished: {source}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A public client running in the browser redeems its code and calls UserInfo from its
/// registered origin; the same page at an origin nobody registered is refused by the browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_page_app_redeems_its_code_from_its_own_origin_only_in_chromium() {
    let idp = Idp::start_with(TestDb::sqlite(true).await, &[]).await;
    let (challenge, verifier) = pkce();
    let spa = single_page_app(idp.issuer(), "browser-spa", verifier.clone()).await;
    let elsewhere = single_page_app(idp.issuer(), "browser-spa", verifier).await;
    let mut new = NewClient::new(
        idp.seed.tenant_a,
        "browser-spa",
        "Browser SPA",
        TokenEndpointAuthMethod::None,
        None,
    );
    new.redirect_uris = vec![format!("{spa}/callback")];
    new.web_origins = vec![spa.clone()];
    new.first_party = true;
    idp.store
        .create_client(&new, &Origin::system())
        .await
        .unwrap();
    let browser = Browser::start().await;
    browser
        .open(
            idp.authorize_url(&[
                ("client_id", "browser-spa"),
                ("redirect_uri", &format!("{spa}/callback")),
                ("response_type", "code"),
                ("scope", "openid email"),
                ("state", "spa-state"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ])
            .as_str(),
        )
        .await;
    browser
        .wait_for("the sign-in page", |u| u.contains("/login"))
        .await;
    browser.type_into("#email", ALICE).await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser
        .wait_for("the application", |u| u.starts_with(&spa))
        .await;
    assert_eq!(outcome(&browser).await, format!("signed-in:{ALICE}"));
    browser.screenshot("8-single-page-app").await;

    // The same page served from an origin no client registers: the browser lets it read
    // nothing (the token endpoint's answer carries no CORS header for it, and the UserInfo
    // preflight is refused).
    browser
        .open(&format!("{elsewhere}/callback?code=whatever"))
        .await;
    assert_eq!(outcome(&browser).await, "blocked:TypeError");
}
