//! The shipped reverse-proxy files in front of the real auth plane: Debian's nginx with the
//! server blocks of `deploy/nginx/opentrusty.conf` and Debian's Caddy with the site blocks of
//! `deploy/caddy/Caddyfile` run as child processes, only their listeners moved to loopback ports
//! without TLS, so the files cannot drift from what is tested. A client's own forwarding headers
//! never reach the plane, never change the audited address and never lift a rate limit. Needs
//! `nginx` and `caddy` (`.ci/run` installs them; the tests fail with that advice otherwise).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod support;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use opentrusty_core::audit::action;
use opentrusty_store::AuditQuery;
use opentrusty_testkit::TestDb;
use serde_json::json;
use support::{Idp, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The address the test client connects from. nginx and the planes use 127.0.0.1, so a plane
/// that fell back to its peer (nginx) would record 127.0.0.1, not this.
const CLIENT: &str = "127.0.0.2";

fn repo_file(path: &str) -> String {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()))
}

/// The top-level blocks of an nginx file (`upstream …`, `server { … }`), comments dropped.
fn blocks(conf: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    for line in conf.lines() {
        let line = line.split('#').next().unwrap_or("").trim_end();
        if line.trim().is_empty() {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        depth += line.matches('{').count();
        depth -= line.matches('}').count();
        if depth == 0 {
            out.push(std::mem::take(&mut current));
        }
    }
    out
}

/// The shipped server block for `name`, listening on `127.0.0.1:port` without TLS.
fn server_block(conf: &str, name: &str, port: u16) -> String {
    let block = blocks(conf)
        .into_iter()
        .find(|b| {
            b.trim_start().starts_with("server") && b.contains(&format!("server_name {name};"))
        })
        .unwrap_or_else(|| panic!("deploy/nginx/opentrusty.conf has no server block for {name}"));
    let mut out = String::new();
    let mut listened = false;
    for line in block.lines() {
        let t = line.trim();
        if t.starts_with("listen ") {
            if !listened {
                out.push_str(&format!("    listen 127.0.0.1:{port};\n"));
                listened = true;
            }
        } else if !t.starts_with("ssl_") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The `proxy_set_header` names of every location of the shipped file that proxies to a plane.
fn proxied_locations(conf: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut location: Option<(String, Vec<String>)> = None;
    for line in conf.lines() {
        let t = line.split('#').next().unwrap_or("").trim();
        if t.starts_with("location ") {
            location = Some((t.trim_end_matches('{').trim().to_owned(), Vec::new()));
        } else if let Some((_, headers)) = location.as_mut()
            && let Some(rest) = t.strip_prefix("proxy_set_header ")
        {
            headers.push(rest.split_whitespace().next().unwrap().to_ascii_lowercase());
        } else if t == "}"
            && let Some(l) = location.take()
            && !l.1.is_empty()
        {
            out.push(l);
        }
    }
    out
}

/// A reverse proxy serving the shipped auth and API blocks on loopback ports, with the auth
/// plane's upstream at a given port; killed when dropped.
struct Proxy {
    name: &'static str,
    child: Option<Child>,
    auth: u16,
    api: u16,
    dir: tempfile::TempDir,
}

/// The first of `candidates` that exists, or a failure saying how to install `package`.
fn binary(package: &str, candidates: &[&str]) -> PathBuf {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "{package} is missing: install Debian's {package} (`apt-get install -y \
                 {package}`; .ci/run does) to run the reverse-proxy tests"
            )
        })
}

impl Proxy {
    /// nginx with the shipped upstreams and the server blocks of the auth and API hosts.
    fn nginx(auth_port: u16) -> Proxy {
        Proxy::nginx_over(&[auth_port], &[free_port()])
    }

    /// As [`Proxy::nginx`] with one `server` line per process in each plane's upstream, as the
    /// shipped file says to write them.
    fn nginx_over(auth_ports: &[u16], admin_ports: &[u16]) -> Proxy {
        let nginx = binary("nginx", &["/usr/sbin/nginx", "/usr/local/sbin/nginx"]);
        let shipped = repo_file("deploy/nginx/opentrusty.conf");
        let dir = tempfile::tempdir().unwrap();
        let (auth, api) = (free_port(), free_port());
        let servers = |ports: &[u16]| -> String {
            ports
                .iter()
                .map(|p| format!("server 127.0.0.1:{p};"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let upstreams: String = blocks(&shipped)
            .into_iter()
            .filter(|b| b.trim_start().starts_with("upstream"))
            .map(|b| {
                b.replace("server 127.0.0.1:8080;", &servers(auth_ports))
                    .replace("server 127.0.0.1:8081;", &servers(admin_ports))
            })
            .collect();
        for port in auth_ports.iter().chain(admin_ports) {
            assert!(
                upstreams.contains(&format!("server 127.0.0.1:{port};")),
                "the shipped upstreams are no longer `server 127.0.0.1:8080;` (auth) and \
                 `server 127.0.0.1:8081;` (admin):\n{shipped}"
            );
        }
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\nevents {{ worker_connections 256; }}\n\
             http {{\n    access_log {d}/access.log;\n    client_body_temp_path {d}/body;\n    \
             proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    \
             uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n{upstreams}{}{}}}\n",
            server_block(&shipped, "auth.example.com", auth),
            server_block(&shipped, "api.example.com", api),
        );
        let conf_file = dir.path().join("nginx.conf");
        std::fs::write(&conf_file, &conf).unwrap();
        let mut cmd = Command::new(nginx);
        cmd.arg("-p").arg(dir.path()).arg("-c").arg(&conf_file);
        Proxy::start("nginx", cmd, dir, auth, api, &conf)
    }

    /// Caddy with the shipped site blocks of the auth and API hosts, plain http, no admin API.
    fn caddy(auth_port: u16) -> Proxy {
        let caddy = binary("caddy", &["/usr/bin/caddy", "/usr/local/bin/caddy"]);
        let shipped = repo_file("deploy/caddy/Caddyfile");
        let dir = tempfile::tempdir().unwrap();
        let (auth, api) = (free_port(), free_port());
        let site = |host: &str, port: u16| {
            let block = blocks(&shipped)
                .into_iter()
                .find(|b| b.trim_start().starts_with(&format!("{host} {{")))
                .unwrap_or_else(|| panic!("deploy/caddy/Caddyfile has no site block for {host}"));
            let block = block.replacen(host, &format!("http://127.0.0.1:{port}"), 1);
            caddy_upstreams(&block, auth_port)
        };
        let sites = format!(
            "{}{}",
            site("auth.example.com", auth),
            site("api.example.com", api)
        );
        assert!(
            sites.contains(&format!("127.0.0.1:{auth_port}")),
            "the shipped Caddyfile no longer proxies to 127.0.0.1:8080:\n{shipped}"
        );
        let d = dir.path().display();
        let conf = format!(
            "{{\n\tauto_https off\n\tadmin off\n\
             \tstorage file_system {d}/storage\n}}\n{sites}"
        );
        let conf_file = dir.path().join("Caddyfile");
        std::fs::write(&conf_file, &conf).unwrap();
        let mut cmd = Command::new(caddy);
        cmd.arg("run")
            .arg("--adapter")
            .arg("caddyfile")
            .arg("--config")
            .arg(&conf_file)
            .env("HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path());
        Proxy::start("caddy", cmd, dir, auth, api, &conf)
    }

    fn start(
        name: &'static str,
        mut cmd: Command,
        dir: tempfile::TempDir,
        auth: u16,
        api: u16,
        conf: &str,
    ) -> Proxy {
        let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let mut proxy = Proxy {
            name,
            child: Some(child),
            auth,
            api,
            dir,
        };
        proxy.wait_listening(conf);
        proxy
    }

    fn wait_listening(&mut self, conf: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let up = [self.auth, self.api]
                .iter()
                .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok());
            if up {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!(
                    "{} exited with {status}:\n{}\n--- configuration ---\n{conf}",
                    self.name,
                    self.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen:\n{}",
                self.name,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn logs(&self) -> String {
        ["stderr.log", "error.log"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `block` with the auth plane's shipped port replaced by `auth_port` and the admin plane's by
/// one where nothing listens (its routes are not under test).
fn caddy_upstreams(block: &str, auth_port: u16) -> String {
    block
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{auth_port}"))
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{}", free_port()))
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- {} ---\n{}", self.name, self.logs());
        }
    }
}

/// An HTTP client connecting from [`CLIENT`].
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(CLIENT.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Every forwarding header a client might try, naming address `n` of a documentation range.
fn forged(n: u8) -> Vec<(&'static str, String)> {
    vec![
        ("forwarded", format!("for=203.0.113.{n};proto=https")),
        ("x-forwarded-for", format!("198.51.100.{n}")),
        ("x-real-ip", format!("192.0.2.{n}")),
        ("x-forwarded-host", "evil.example".to_owned()),
        ("x-forwarded-port", "8443".to_owned()),
        ("x-forwarded-proto", "https".to_owned()),
    ]
}

/// Every location of the shipped file that proxies to a plane sets or clears the same
/// forwarding headers, so testing one of them tests them all.
#[test]
fn every_proxied_location_sets_or_clears_every_forwarding_header() {
    let locations = proxied_locations(&repo_file("deploy/nginx/opentrusty.conf"));
    assert!(locations.len() >= 3, "{locations:?}");
    for (location, headers) in &locations {
        for header in [
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-request-id",
            "forwarded",
            "x-real-ip",
            "x-forwarded-host",
            "x-forwarded-port",
        ] {
            assert!(
                headers.iter().any(|h| h == header),
                "{location} neither sets nor clears {header}"
            );
        }
    }
}

/// What `proxy` sends upstream for a request full of forged forwarding headers: the client's
/// address as the only X-Forwarded-For, the scheme it used, and none of the others.
async fn upstream_head_through(proxy: fn(u16) -> Proxy) {
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = proxy(upstream.local_addr().unwrap().port());
    let captured = tokio::spawn(async move {
        let (mut socket, _) = upstream.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "the proxy closed before sending the head");
            head.extend_from_slice(&buf[..n]);
        }
        socket
            .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        String::from_utf8_lossy(&head).to_ascii_lowercase()
    });
    let mut request = client().get(format!("http://127.0.0.1:{}/health", proxy.auth));
    for (name, value) in forged(9) {
        request = request.header(name, value);
    }
    assert_eq!(request.send().await.unwrap().status(), 204);
    let head = captured.await.unwrap();
    let values = |name: &str| -> Vec<&str> {
        head.lines()
            .filter_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(str::trim)
            .collect()
    };
    let name = proxy.name;
    assert_eq!(values("x-forwarded-for"), [CLIENT], "{name}:\n{head}");
    assert_eq!(values("x-forwarded-proto"), ["http"], "{name}:\n{head}");
    for cleared in ["forwarded", "x-real-ip", "x-forwarded-port"] {
        assert!(
            values(cleared).is_empty(),
            "{name} passed on {cleared}:\n{head}"
        );
    }
    // nginx clears it; Caddy sets it to the Host it received.
    assert!(
        values("x-forwarded-host")
            .iter()
            .all(|h| !h.contains("evil")),
        "{name}:\n{head}"
    );
    assert_eq!(values("x-request-id").len(), 1, "{name}:\n{head}");
}

#[tokio::test]
async fn nginx_passes_on_no_forwarding_header_of_the_client() {
    upstream_head_through(Proxy::nginx).await;
}

#[tokio::test]
async fn caddy_passes_on_no_forwarding_header_of_the_client() {
    upstream_head_through(Proxy::caddy).await;
}

/// Through `proxy`, failed sign-ins full of forged forwarding headers (a different address
/// each time) are audited with the client's real address and hit the rate limit of that address.
async fn forged_addresses_are_neither_audited_nor_rate_limited_apart(
    db: TestDb,
    proxy: fn(u16) -> Proxy,
) {
    let trusted = repo_file("deploy/systemd/opentrusty.env.example")
        .lines()
        .find_map(|l| l.strip_prefix("OPENTRUSTY_TRUSTED_PROXIES="))
        .expect("the shipped environment names the trusted proxies")
        .to_owned();
    let idp = Idp::start_with(
        db,
        &[
            ("OPENTRUSTY_TRUSTED_PROXIES", trusted.as_str()),
            ("OPENTRUSTY_RATE_LIMIT_LOGIN", "3/60"),
        ],
    )
    .await;
    let proxy = proxy(idp.server.port);
    let http = client();
    // The auth host's own sign-in route, and the console's, passed on by the API host.
    let routes = [
        format!("http://127.0.0.1:{}/api/v1/auth/login", proxy.auth),
        format!("http://127.0.0.1:{}/api/v1/auth/login", proxy.api),
    ];
    let mut statuses = Vec::new();
    for n in 1..=8u8 {
        let mut request = http
            .post(&routes[usize::from(n) % 2])
            .json(&json!({ "email": "nobody@example.com", "password": "wrong password" }));
        for (name, value) in forged(n) {
            request = request.header(name, value);
        }
        statuses.push(request.send().await.unwrap().status().as_u16());
    }
    assert_eq!(
        statuses,
        [401, 401, 401, 429, 429, 429, 429, 429],
        "behind {}, a forged address lifted the sign-in limit of {CLIENT}",
        proxy.name
    );
    let audited: Vec<Option<String>> = idp
        .store
        .list_audit(&AuditQuery {
            action: Some(action::LOGIN_FAILED.to_owned()),
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.ip)
        .collect();
    assert_eq!(audited.len(), 3, "{audited:?}");
    for ip in audited {
        assert_eq!(
            ip.as_deref(),
            Some(CLIENT),
            "the audit row's address behind {}",
            proxy.name
        );
    }
}

/// Each test once per backend: `sqlite::…` always, `postgres::…` when
/// `OPENTRUSTY_TEST_DATABASE_URL` is set.
macro_rules! on_both_backends {
    ($($name:ident: $proxy:expr),* $(,)?) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    forged_addresses_are_neither_audited_nor_rate_limited_apart(
                        TestDb::sqlite(true).await,
                        $proxy,
                    )
                    .await;
                }
            )*
        }
        mod postgres {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(db) = TestDb::postgres(true).await else {
                        return;
                    };
                    forged_addresses_are_neither_audited_nor_rate_limited_apart(db, $proxy).await;
                }
            )*
        }
    };
}

on_both_backends!(
    behind_nginx_forged_addresses_are_neither_audited_nor_rate_limited_apart: Proxy::nginx,
    behind_caddy_forged_addresses_are_neither_audited_nor_rate_limited_apart: Proxy::caddy,
);

/// The status of each request, sent one after another.
async fn statuses(requests: Vec<reqwest::RequestBuilder>) -> Vec<u16> {
    let mut out = Vec::new();
    for r in requests {
        out.push(r.send().await.unwrap().status().as_u16());
    }
    out
}

/// How many requests to `route` a process logged.
fn served(server: &support::Server, route: &str) -> usize {
    let needle = format!("\"route\":\"{route}\"");
    server
        .output()
        .lines()
        .filter(|l| l.contains(&needle))
        .count()
}

/// Three auth and two admin processes behind nginx, one `server` line each as the shipped file
/// says: nginx spreads each plane's requests over every process, a token or session made
/// through one process is honoured through all, and a stopped process is passed over without
/// one failed request.
async fn nginx_spreads_each_plane_over_its_processes(db: TestDb) {
    use support::SERVICE;
    const ROOT: &str = "root@platform.example";
    let store = db.store().await;
    let seed = support::seed(&store).await;
    support::bootstrap_platform_admin(&store, ROOT, support::PASSWORD).await;
    store.close().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut auth, mut admin) = support::fleet(dir.path(), db.url(), 3, 2).await;
    let auth_ports: Vec<u16> = auth.iter().map(|s| s.port).collect();
    let admin_ports: Vec<u16> = admin.iter().map(|s| s.port).collect();
    let proxy = Proxy::nginx_over(&auth_ports, &admin_ports);
    let http = client();
    let token_url = format!("http://127.0.0.1:{}/oauth2/token", proxy.auth);
    let introspect_url = format!("http://127.0.0.1:{}/oauth2/introspect", proxy.auth);
    let users_url = format!(
        "http://127.0.0.1:{}/api/v1/tenants/{}/users",
        proxy.api, seed.tenant_a.0
    );
    let (session, _) = support::console_sign_in(
        &format!("http://127.0.0.1:{}", proxy.api),
        ROOT,
        support::PASSWORD,
    )
    .await;
    let (id, secret) = (SERVICE.client_id, SERVICE.secret.unwrap());

    // Issues `n` tokens through nginx and checks each is active through nginx, then lists users
    // `n` times through the API host with the session made through it.
    let round = |n: usize| {
        let http = http.clone();
        let (token_url, introspect_url, users_url) = (&token_url, &introspect_url, &users_url);
        let session = &session;
        async move {
            let mut tokens = Vec::new();
            for _ in 0..n {
                let r = http
                    .post(token_url)
                    .basic_auth(id, Some(secret))
                    .form(&[("grant_type", "client_credentials"), ("scope", "api:read")])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "a token through nginx");
                let body: serde_json::Value = r.json().await.unwrap();
                tokens.push(body["access_token"].as_str().unwrap().to_owned());
            }
            for token in &tokens {
                let r = http
                    .post(introspect_url)
                    .basic_auth(id, Some(secret))
                    .form(&[("token", token.as_str())])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let body: serde_json::Value = r.json().await.unwrap();
                assert_eq!(
                    body["active"], true,
                    "a token from any process is active on all"
                );
            }
            let lists = (0..n)
                .map(|_| {
                    http.get(users_url)
                        .header("cookie", format!("ot_session={session}"))
                })
                .collect();
            assert_eq!(
                statuses(lists).await,
                vec![200; n],
                "the users list through nginx"
            );
        }
    };

    round(12).await;
    for (i, server) in auth.iter().enumerate() {
        let n = served(server, "/oauth2/token");
        assert!(n >= 2, "auth process {i} served {n} of 12 token requests");
    }
    for (i, server) in admin.iter().enumerate() {
        let n = served(server, "/api/v1/tenants/{tenant_id}/users");
        assert!(n >= 2, "admin process {i} served {n} of 12 list requests");
    }

    // A stopped process in each plane: nginx cannot connect to it and sends the request to the
    // next, so no client sees the stop.
    auth[1].kill();
    admin[0].kill();
    round(12).await;
    for server in [&auth[0], &auth[2]] {
        assert!(served(server, "/oauth2/token") >= 6, "{}", proxy.logs());
    }
}

#[tokio::test]
async fn behind_nginx_each_plane_is_spread_over_its_processes_on_sqlite() {
    nginx_spreads_each_plane_over_its_processes(TestDb::sqlite(true).await).await;
}

#[tokio::test]
async fn behind_nginx_each_plane_is_spread_over_its_processes_on_postgres() {
    let Some(db) = TestDb::postgres(true).await else {
        return;
    };
    nginx_spreads_each_plane_over_its_processes(db).await;
}
