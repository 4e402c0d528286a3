//! Shared support for the end-to-end tests of the auth plane: the real binary started on a
//! seeded throwaway database, a cookie-keeping "browser" that walks the sign-in and consent
//! pages, a parser for the pages' hidden inputs, and raw HTTP helpers for the JSON endpoints.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use opentrusty_core::UserId;
use opentrusty_core::audit::Origin;
use opentrusty_store::Store;
use opentrusty_testkit::TestDb;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use reqwest::{StatusCode, Url};
use serde_json::Value;

pub use opentrusty_testkit::world::*;

/// A token request to `base` as `client`.
pub fn token_request_to(
    base: &str,
    client: TestClient,
    form: &[(&str, &str)],
) -> reqwest::RequestBuilder {
    client_post(format!("{base}/oauth2/token"), ClientAuth::of(client), form)
}

/// The binary with a clean `OPENTRUSTY_*` environment, run in `dir`.
pub fn opentrusty(dir: &Path) -> Command {
    opentrusty_at(Path::new(env!("CARGO_BIN_EXE_opentrusty")), dir)
}

/// As [`opentrusty`], for another build of it (an earlier release).
pub fn opentrusty_at(binary: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new(binary);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OPENTRUSTY_") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(dir).stdin(Stdio::null());
    cmd
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `opentrusty serve auth`, killed when dropped. Its output goes to a file (a pipe
/// nobody reads would fill up and stall the server); the file is printed when a test fails.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    log: PathBuf,
}

impl Server {
    /// Starts `serve auth` on `port` against `db_url`, with the issuer `http://127.0.0.1:<port>`.
    pub fn auth(dir: &Path, db_url: &str, port: u16) -> Server {
        Server::auth_with(dir, db_url, port, &[])
    }

    /// As [`Server::auth`], with extra environment variables.
    pub fn auth_with(dir: &Path, db_url: &str, port: u16, env: &[(&str, &str)]) -> Server {
        let issuer = format!("http://127.0.0.1:{port}");
        let mut all = vec![("OPENTRUSTY_ISSUER", issuer.as_str())];
        all.extend_from_slice(env);
        Server::start(dir, "auth", db_url, port, &all)
    }

    /// Starts `serve admin` on `port`; enrollment links point at `auth_issuer`.
    pub fn admin(dir: &Path, db_url: &str, port: u16, auth_issuer: &str) -> Server {
        Server::start(
            dir,
            "admin",
            db_url,
            port,
            &[
                ("OPENTRUSTY_ISSUER", auth_issuer),
                ("OPENTRUSTY_CONSOLE_ORIGINS", "https://console.example"),
            ],
        )
    }

    /// Starts `serve <plane>` on `port` against `db_url` with `env` added.
    pub fn start(dir: &Path, plane: &str, db_url: &str, port: u16, env: &[(&str, &str)]) -> Server {
        Server::start_adjusted(dir, plane, db_url, port, env, |_| {})
    }

    /// As [`Server::start`], with `adjust` applied to the command last (limits, pre-exec hooks).
    pub fn start_adjusted(
        dir: &Path,
        plane: &str,
        db_url: &str,
        port: u16,
        env: &[(&str, &str)],
        adjust: impl FnOnce(&mut Command),
    ) -> Server {
        Server::start_of(opentrusty(dir), dir, plane, db_url, port, env, adjust)
    }

    /// As [`Server::start`], running `binary` (another build of the server).
    pub fn start_binary(
        binary: &Path,
        dir: &Path,
        plane: &str,
        db_url: &str,
        port: u16,
        env: &[(&str, &str)],
    ) -> Server {
        Server::start_of(
            opentrusty_at(binary, dir),
            dir,
            plane,
            db_url,
            port,
            env,
            |_| {},
        )
    }

    fn start_of(
        mut cmd: Command,
        dir: &Path,
        plane: &str,
        db_url: &str,
        port: u16,
        env: &[(&str, &str)],
        adjust: impl FnOnce(&mut Command),
    ) -> Server {
        let log = dir.join(format!("server-{port}.log"));
        let out = File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        // Tests send many requests from one address; the rate-limit tests set their own.
        for var in [
            "OPENTRUSTY_RATE_LIMIT_LOGIN",
            "OPENTRUSTY_RATE_LIMIT_ENROLL",
            "OPENTRUSTY_RATE_LIMIT_AUTHORIZE",
            "OPENTRUSTY_RATE_LIMIT_TOKEN",
        ] {
            cmd.env(var, "off");
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let port_var = if plane == "admin" {
            "OPENTRUSTY_ADMIN_PORT"
        } else {
            "OPENTRUSTY_AUTH_PORT"
        };
        cmd.args(["serve", plane])
            .env("OPENTRUSTY_DATABASE_URL", db_url)
            .env("OPENTRUSTY_SECRET_KEY", SECRET_KEY)
            .env(port_var, port.to_string())
            .env("OPENTRUSTY_BIND_ADDRESS", "127.0.0.1")
            .env("OPENTRUSTY_ARGON2_MEMORY_KIB", "8192")
            .stdout(out)
            .stderr(err);
        adjust(&mut cmd);
        let child = cmd.spawn().expect("spawn opentrusty");
        Server {
            child: Some(child),
            port,
            log,
        }
    }

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the process with SIGKILL (no shutdown of any kind) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL the server");
            child.wait().expect("reap the server");
        }
    }

    /// The process id (0 once it is gone).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or_default()
    }

    /// Whether the process has exited (and then its status).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().unwrap())
    }

    /// The process's resident memory now, in kB (from /proc).
    pub fn rss_kb(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `/health` answers, failing with the server's output if it exits first.
    pub async fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let http = reqwest::Client::new();
        loop {
            if let Ok(r) = http.get(self.url("/health")).send().await
                && r.status() == 200
            {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!(
                    "server exited with {status} before answering:\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "server did not become healthy:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let out = self.output();
            let lines: Vec<&str> = out.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!(
                "--- last lines of the server on port {} ---\n{}",
                self.port,
                tail.join("\n")
            );
        }
    }
}

/// `auth` auth processes, all with the first one's address as their issuer (as behind one load
/// balancer), then `admin` admin processes, on `db_url`; each started once the one before it
/// answers.
pub async fn fleet(
    dir: &Path,
    db_url: &str,
    auth: usize,
    admin: usize,
) -> (Vec<Server>, Vec<Server>) {
    let ports: Vec<u16> = (0..auth).map(|_| free_port()).collect();
    let issuer = format!("http://127.0.0.1:{}", ports[0]);
    let mut auths = Vec::new();
    for port in ports {
        let env = [("OPENTRUSTY_ISSUER", issuer.as_str())];
        let mut server = Server::auth_with(dir, db_url, port, &env);
        server.wait_healthy().await;
        auths.push(server);
    }
    let mut admins = Vec::new();
    for _ in 0..admin {
        let mut server = Server::admin(dir, db_url, free_port(), &issuer);
        server.wait_healthy().await;
        admins.push(server);
    }
    (auths, admins)
}

/// A seeded database and the auth plane serving it. Fields drop in order: the server stops
/// before its database goes away.
pub struct Idp {
    pub server: Server,
    pub store: Store,
    pub seed: Seed,
    pub db: TestDb,
    pub dir: tempfile::TempDir,
}

impl Idp {
    /// Seeds `db` and starts `serve auth` on it.
    pub async fn start(db: TestDb) -> Idp {
        Idp::start_with(db, &[]).await
    }

    /// As [`Idp::start`], with extra environment variables for the server.
    pub async fn start_with(db: TestDb, env: &[(&str, &str)]) -> Idp {
        let store = db.store().await;
        let seed = seed(&store).await;
        let dir = tempfile::tempdir().unwrap();
        let mut server = Server::auth_with(dir.path(), db.url(), free_port(), env);
        server.wait_healthy().await;
        Idp {
            server,
            store,
            seed,
            db,
            dir,
        }
    }

    /// On a fresh migrated SQLite database.
    pub async fn sqlite() -> Idp {
        Idp::start(TestDb::sqlite(true).await).await
    }

    pub fn issuer(&self) -> String {
        self.server.issuer()
    }

    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// `/oauth2/authorize` with these query parameters.
    pub fn authorize_url(&self, params: &[(&str, &str)]) -> Url {
        Url::parse_with_params(&self.url("/oauth2/authorize"), params).unwrap()
    }

    /// Provisions a tenant-A member without a password, as the admin plane does: the user's id
    /// and the token of their enrollment link (valid 72 h).
    pub async fn invite(&self, email: &str, given_name: Option<&str>) -> (UserId, String) {
        let token = opentrusty_core::secret::random_token();
        let user = self
            .store
            .provision_user(
                &opentrusty_core::user::NewUser::new(
                    Some(self.seed.tenant_a),
                    email,
                    given_name,
                    None,
                )
                .unwrap(),
                Some(opentrusty_core::rbac::Role::TenantMember),
                &opentrusty_store::NewEnrollmentLink {
                    token_digest: opentrusty_core::secret::token_digest(&token),
                    purpose: opentrusty_store::EnrollmentPurpose::Enroll,
                    expires_at: opentrusty_core::now() + time::Duration::hours(72),
                },
                &Origin::system(),
            )
            .await
            .unwrap();
        (user.id, token)
    }

    /// Runs the CLI against this database (`keys rotate`, `keys list`, ...).
    pub fn cli(&self, args: &[&str]) -> (bool, String) {
        let out = opentrusty(self.dir.path())
            .args(args)
            .env("OPENTRUSTY_DATABASE_URL", self.db.url())
            .env("OPENTRUSTY_SECRET_KEY", SECRET_KEY)
            .output()
            .expect("run opentrusty");
        (
            out.status.success(),
            format!("{}{}", text(&out.stdout), text(&out.stderr)),
        )
    }
}

/// Signs in on the console endpoint of the auth plane at `base`: the session cookie's value and
/// the CSRF token the admin plane wants with it.
pub async fn console_sign_in(base: &str, email: &str, password: &str) -> (String, String) {
    let r = http()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("ot_session="))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();
    let body: Value = r.json().await.unwrap();
    (cookie, body["csrf_token"].as_str().unwrap().to_owned())
}

/// A random S256 PKCE pair: (challenge, verifier).
pub fn pkce() -> (String, String) {
    let (challenge, verifier) = openidconnect::PkceCodeChallenge::new_random_sha256();
    (challenge.as_str().to_owned(), verifier.secret().clone())
}

/// Standard authorize parameters for `client` (code flow, S256 PKCE with `challenge`).
pub fn code_params<'a>(
    client: TestClient,
    scope: &'a str,
    state: &'a str,
    challenge: &'a str,
) -> Vec<(&'static str, &'a str)> {
    vec![
        ("client_id", client.client_id),
        ("redirect_uri", CALLBACK),
        ("response_type", "code"),
        ("scope", scope),
        ("state", state),
        ("nonce", "n-0S6_WzA2Mj"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ]
}

// ---------------------------------------------------------------------------------------------
// HTML

/// Undoes the escaping the pages apply to attribute values.
pub fn html_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';').filter(|e| *e <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "quot" => Some('"'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "apos" => Some('\''),
            _ => {
                if let Some(hex) = entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                {
                    u32::from_str_radix(hex, 16).ok().and_then(char::from_u32)
                } else if let Some(dec) = entity.strip_prefix('#') {
                    dec.parse().ok().and_then(char::from_u32)
                } else {
                    None
                }
            }
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The attributes of one tag body (what follows the tag name, up to `>`).
fn attributes(tag: &str) -> HashMap<String, String> {
    let mut attrs = HashMap::new();
    let bytes = tag.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
            i += 1;
        }
        let start = i;
        while i < bytes.len()
            && !bytes[i].is_ascii_whitespace()
            && bytes[i] != b'='
            && bytes[i] != b'/'
        {
            i += 1;
        }
        if start == i {
            i += 1;
            continue;
        }
        let name = tag[start..i].to_ascii_lowercase();
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < bytes.len() && bytes[i] == b'=' {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            let value = if i < bytes.len() && (bytes[i] == b'"' || bytes[i] == b'\'') {
                let quote = bytes[i];
                i += 1;
                let vstart = i;
                while i < bytes.len() && bytes[i] != quote {
                    i += 1;
                }
                let v = &tag[vstart..i];
                i += 1;
                v
            } else {
                let vstart = i;
                while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                    i += 1;
                }
                &tag[vstart..i]
            };
            attrs.insert(name, html_unescape(value));
        } else {
            attrs.insert(name, String::new());
        }
    }
    attrs
}

/// `name` → `value` of every `<input>` with a name in `html` (attribute order free, values
/// unescaped).
pub fn inputs(html: &str) -> HashMap<String, String> {
    let mut found = HashMap::new();
    let lower = html.to_ascii_lowercase();
    let mut from = 0;
    while let Some(pos) = lower[from..].find("<input") {
        let start = from + pos + "<input".len();
        // Attribute values are escaped, so the first '>' closes the tag.
        let end = lower[start..].find('>').map_or(html.len(), |e| start + e);
        let attrs = attributes(&html[start..end]);
        if let Some(name) = attrs.get("name") {
            found.insert(
                name.clone(),
                attrs.get("value").cloned().unwrap_or_default(),
            );
        }
        from = end;
    }
    found
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// A raw answer: status, headers, body, and the body as JSON when it is JSON.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
    pub json: Value,
}

impl Reply {
    pub async fn read(r: reqwest::Response) -> Reply {
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.text().await.unwrap();
        let json = serde_json::from_str(&body).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            json,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn location(&self) -> Option<&str> {
        self.header(LOCATION.as_str())
    }

    /// The `error` member of a JSON error.
    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or("<no error member>")
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect()
    }

    /// Whether the answer is an HTML page.
    pub fn is_html(&self) -> bool {
        self.header("content-type")
            .is_some_and(|c| c.starts_with("text/html"))
    }

    /// Asserts the status, showing the body otherwise.
    #[track_caller]
    pub fn expect_status(&self, status: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; headers {:?}\nbody: {}",
            self.headers,
            self.body
        );
        self
    }
}

/// A client that follows no redirect and keeps no cookie.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// How a raw request authenticates its client.
#[derive(Debug, Clone, Copy)]
pub enum ClientAuth<'a> {
    /// HTTP Basic with this id and secret.
    Basic(&'a str, &'a str),
    /// `client_id` in the body only (public clients).
    Public(&'a str),
}

impl<'a> ClientAuth<'a> {
    /// The registered method of a seeded client.
    pub fn of(c: TestClient) -> ClientAuth<'static> {
        match c.secret {
            Some(s) => ClientAuth::Basic(c.client_id, s),
            None => ClientAuth::Public(c.client_id),
        }
    }
}

/// POSTs a form to `path` with client authentication.
pub async fn post_form(
    idp: &Idp,
    path: &str,
    auth: ClientAuth<'_>,
    form: &[(&str, &str)],
) -> Reply {
    Reply::read(client_post(idp.url(path), auth, form).send().await.unwrap()).await
}

/// A form post to `url` as `auth`: HTTP Basic, or `client_id` in the form for a public client.
pub fn client_post(
    url: String,
    auth: ClientAuth<'_>,
    form: &[(&str, &str)],
) -> reqwest::RequestBuilder {
    let mut form: Vec<(&str, &str)> = form.to_vec();
    let mut req = http().post(url);
    match auth {
        ClientAuth::Basic(id, secret) => req = req.basic_auth(id, Some(secret)),
        ClientAuth::Public(id) => form.push(("client_id", id)),
    }
    req.form(&form)
}

pub async fn token_request(idp: &Idp, auth: ClientAuth<'_>, form: &[(&str, &str)]) -> Reply {
    post_form(idp, "/oauth2/token", auth, form).await
}

pub async fn introspect(idp: &Idp, auth: ClientAuth<'_>, token: &str) -> Reply {
    post_form(idp, "/oauth2/introspect", auth, &[("token", token)]).await
}

pub async fn userinfo(idp: &Idp, access_token: &str) -> Reply {
    Reply::read(
        http()
            .get(idp.url("/oauth2/userinfo"))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Exchanges a code at the token endpoint.
pub async fn exchange_code(
    idp: &Idp,
    client: TestClient,
    code: &str,
    verifier: Option<&str>,
) -> Reply {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", CALLBACK),
    ];
    if let Some(v) = verifier {
        form.push(("code_verifier", v));
    }
    token_request(idp, ClientAuth::of(client), &form).await
}

pub async fn refresh(idp: &Idp, client: TestClient, token: &str, scope: Option<&str>) -> Reply {
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    token_request(idp, ClientAuth::of(client), &form).await
}

/// The query parameters of a URL.
pub fn query(url: &Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

/// Whether `url` points at the (never contacted) relying party on 127.0.0.1:9.
pub fn at_relying_party(url: &Url) -> bool {
    url.host_str() == Some("127.0.0.1") && url.port() == Some(9)
}

/// The decoded JSON header and payload of a JWS compact token (no verification).
pub fn jwt_parts(token: &str) -> (Value, Value) {
    use base64::Engine as _;
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWS: {token}");
    let decode = |p: &str| -> Value {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    (decode(parts[0]), decode(parts[1]))
}

// ---------------------------------------------------------------------------------------------
// The browser

/// Where a browser journey ended and what it went through.
#[derive(Debug)]
pub struct Journey {
    /// The URL at the relying party the browser was finally sent to.
    pub callback: Url,
    pub saw_login: bool,
    pub saw_consent: bool,
}

impl Journey {
    pub fn params(&self) -> HashMap<String, String> {
        query(&self.callback)
    }

    #[track_caller]
    pub fn code(&self) -> String {
        let p = self.params();
        p.get("code")
            .unwrap_or_else(|| panic!("no code in {}", self.callback))
            .clone()
    }
}

/// A user agent: keeps cookies, follows no redirect by itself.
pub struct Browser {
    pub http: reqwest::Client,
    base: Url,
}

impl Browser {
    pub fn new(idp: &Idp) -> Browser {
        Browser::at(&idp.url("/"))
    }

    /// A browser whose relative redirects resolve against `base`.
    pub fn at(base: &str) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .cookie_store(true)
                .build()
                .unwrap(),
            base: Url::parse(base).unwrap(),
        }
    }

    pub fn resolve(&self, location: &str) -> Url {
        self.base.join(location).unwrap()
    }

    pub async fn get(&self, url: &str) -> Reply {
        Reply::read(self.http.get(url).send().await.unwrap()).await
    }

    pub async fn post(&self, url: &str, form: &[(&str, &str)]) -> Reply {
        Reply::read(self.http.post(url).form(form).send().await.unwrap()).await
    }

    /// A 303's target, resolved.
    #[track_caller]
    pub fn see_other(&self, r: &Reply) -> Url {
        r.expect_status(303);
        self.resolve(r.location().expect("a 303 carries a Location"))
    }

    /// GETs the sign-in page at `url` and returns it with its hidden inputs.
    pub async fn login_page(&self, url: &str) -> (Reply, HashMap<String, String>) {
        let page = self.get(url).await;
        page.expect_status(200);
        assert!(page.is_html(), "{:?}", page.headers);
        let fields = inputs(&page.body);
        assert!(fields.contains_key("csrf_token"), "{}", page.body);
        assert!(fields.contains_key("return_to"), "{}", page.body);
        (page, fields)
    }

    /// Submits the sign-in form found at `url` with these credentials.
    pub async fn submit_login(&self, url: &str, email: &str, password: &str) -> Reply {
        let (_, fields) = self.login_page(url).await;
        self.post(
            self.resolve("/login").as_str(),
            &[
                ("email", email),
                ("password", password),
                ("csrf_token", &fields["csrf_token"]),
                ("return_to", &fields["return_to"]),
            ],
        )
        .await
    }

    /// Walks from `start` through redirects, the sign-in page (with `credentials`) and the
    /// consent page (approving) until the browser is sent to the relying party.
    pub async fn journey(&self, start: Url, credentials: Option<(&str, &str)>) -> Journey {
        let mut url = start;
        let (mut saw_login, mut saw_consent) = (false, false);
        for _ in 0..12 {
            if at_relying_party(&url) {
                return Journey {
                    callback: url,
                    saw_login,
                    saw_consent,
                };
            }
            match url.path() {
                "/login" => {
                    saw_login = true;
                    let (email, password) =
                        credentials.unwrap_or_else(|| panic!("unexpected sign-in page: {url}"));
                    let (_, fields) = self.login_page(url.as_str()).await;
                    let r = self
                        .post(
                            self.resolve("/login").as_str(),
                            &[
                                ("email", email),
                                ("password", password),
                                ("csrf_token", &fields["csrf_token"]),
                                ("return_to", &fields["return_to"]),
                            ],
                        )
                        .await;
                    // The sign-in carries the authorization request on at once: to the
                    // consent page or the client, never back through the endpoint.
                    let next = self.see_other(&r);
                    assert!(
                        next.path() == "/consent" || at_relying_party(&next),
                        "sign-in continues the authorization request: {next}"
                    );
                    assert!(
                        r.set_cookies().iter().any(|c| c.starts_with("ot_session=")),
                        "sign-in sets a session cookie: {:?}",
                        r.headers
                    );
                    url = next;
                }
                "/consent" => {
                    saw_consent = true;
                    let page = self.get(url.as_str()).await;
                    page.expect_status(200);
                    let fields = inputs(&page.body);
                    let (Some(csrf), Some(request)) =
                        (fields.get("csrf_token"), fields.get("request"))
                    else {
                        panic!("consent page without csrf_token/request: {}", page.body);
                    };
                    let r = self
                        .post(
                            self.resolve("/consent").as_str(),
                            &[
                                ("csrf_token", csrf.as_str()),
                                ("request", request.as_str()),
                                ("decision", "approve"),
                            ],
                        )
                        .await;
                    let next = self.see_other(&r);
                    assert_eq!(next.path(), "/oauth2/authorize", "{next}");
                    url = next;
                }
                _ => {
                    let r = self.get(url.as_str()).await;
                    url = self.see_other(&r);
                }
            }
        }
        panic!("too many redirects, last at {url}");
    }
}
