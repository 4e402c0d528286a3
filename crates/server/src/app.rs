//! What one listener serves: its planes' routes and the probes, routed by `Host` when plane
//! domains are configured (`421 Misdirected Request` for a host that is not this listener's),
//! wrapped in the edge layer (client address, request id, log line, metrics).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentrusty_web::edge::{self, EdgeConfig};
use tower::ServiceExt as _;

/// The planes a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Planes {
    Auth,
    Admin,
    Both,
}

/// Host names of the planes; `None` where routing by port is wanted.
#[derive(Debug, Clone, Default)]
pub struct Domains {
    pub auth: Option<String>,
    pub admin: Option<String>,
}

/// The plane routers a listener may dispatch to, already with their state.
pub struct PlaneRouters {
    pub auth: Option<Router>,
    pub admin: Option<Router>,
    pub probes: Router,
}

/// Which router answers a request for `host` (lowercase, without port), or `None` for 421.
fn choose(planes: Planes, domains: &Domains, host: Option<&str>) -> Option<Planes> {
    let is = |d: &Option<String>| matches!((d, host), (Some(d), Some(h)) if d == h);
    match planes {
        Planes::Both => match (&domains.auth, &domains.admin) {
            (None, None) => Some(Planes::Both),
            _ if is(&domains.auth) => Some(Planes::Auth),
            _ if is(&domains.admin) => Some(Planes::Admin),
            // One domain configured: the other plane keeps every other host.
            (Some(_), None) => Some(Planes::Admin),
            (None, Some(_)) => Some(Planes::Auth),
            _ => None,
        },
        Planes::Auth => {
            let foreign = is(&domains.admin) || (domains.auth.is_some() && !is(&domains.auth));
            (!foreign).then_some(Planes::Auth)
        }
        Planes::Admin => {
            let foreign = is(&domains.auth) || (domains.admin.is_some() && !is(&domains.admin));
            (!foreign).then_some(Planes::Admin)
        }
    }
}

/// The host a request names, lowercase, without port or trailing dot.
fn request_host(req: &Request) -> Option<String> {
    let raw = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()))?;
    let host = match raw.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default().to_owned(),
        None => raw
            .rsplit_once(':')
            .map_or(raw.as_str(), |(h, _)| h)
            .to_owned(),
    };
    Some(host.trim_end_matches('.').to_ascii_lowercase())
}

fn misdirected() -> Response {
    (
        StatusCode::MISDIRECTED_REQUEST,
        axum::Json(serde_json::json!({
            "error": "misdirected_request",
            "error_description": "this server does not serve that host",
        })),
    )
        .into_response()
}

/// The listener's whole application.
pub fn listener_app(
    planes: Planes,
    domains: Domains,
    routers: PlaneRouters,
    edge: EdgeConfig,
) -> Router {
    let with = |r: Option<&Router>| {
        let base = r.cloned().unwrap_or_default();
        base.merge(routers.probes.clone())
            .fallback(opentrusty_web::not_found)
    };
    let auth = with(routers.auth.as_ref());
    let admin = with(routers.admin.as_ref());
    let both = match (&routers.auth, &routers.admin) {
        (Some(a), Some(b)) => a.clone().merge(b.clone()),
        (Some(a), None) => a.clone(),
        (None, Some(b)) => b.clone(),
        (None, None) => Router::new(),
    }
    .merge(routers.probes.clone())
    .fallback(opentrusty_web::not_found);
    let domains = Arc::new(domains);
    Router::new()
        .fallback(move |req: Request<Body>| {
            let probe = opentrusty_web::PROBE_PATHS.contains(&req.uri().path());
            let target = if probe {
                Some(planes)
            } else {
                choose(planes, &domains, request_host(&req).as_deref())
            };
            let router = match target {
                Some(Planes::Auth) => Some(auth.clone()),
                Some(Planes::Admin) => Some(admin.clone()),
                Some(Planes::Both) => Some(both.clone()),
                None => None,
            };
            async move {
                match router {
                    Some(r) => r.oneshot(req).await.into_response(),
                    None => misdirected(),
                }
            }
        })
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(edge),
            edge::observe,
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route a listener for `planes` serves, as `METHOD path` lines, sorted: the probes and
    /// the planes' own route tables.
    fn route_table(planes: Planes) -> Vec<String> {
        let mut lines: Vec<String> = opentrusty_web::PROBE_PATHS
            .iter()
            .map(|p| format!("GET {p}"))
            .collect();
        if planes != Planes::Admin {
            lines.extend(
                opentrusty_auth::route_table()
                    .into_iter()
                    .map(|(m, p)| format!("{m} {p}")),
            );
        }
        if planes != Planes::Auth {
            lines.extend(
                opentrusty_admin::route_table()
                    .into_iter()
                    .map(|(m, p)| format!("{m} {p}")),
            );
        }
        lines.sort();
        lines
    }

    /// The route table of each mode is the committed snapshot (`src/snapshots/`): adding a route
    /// to a plane (or to the wrong plane) fails here until the new table, reviewed, is accepted.
    #[test]
    fn route_tables_are_as_committed() {
        for (planes, name) in [
            (Planes::Auth, "routes_auth"),
            (Planes::Admin, "routes_admin"),
            (Planes::Both, "routes_all"),
        ] {
            insta::assert_snapshot!(name, route_table(planes).join("\n"));
        }
    }

    /// The planes' paths are disjoint (so `serve all` can merge them) and neither plane answers
    /// the other's paths.
    #[test]
    fn the_planes_share_no_path() {
        let auth: std::collections::BTreeSet<String> = opentrusty_auth::route_table()
            .into_iter()
            .map(|(_, p)| p.to_owned())
            .collect();
        let admin: std::collections::BTreeSet<String> = opentrusty_admin::route_table()
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        assert!(auth.is_disjoint(&admin), "{:?}", auth.intersection(&admin));
    }

    /// `cargo metadata` of the workspace, offline, with `args`.
    fn cargo_metadata(args: &[&str]) -> serde_json::Value {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");
        let out = std::process::Command::new(&cargo)
            .args(["metadata", "--format-version", "1", "--offline"])
            .args(args)
            .args(["--manifest-path", manifest])
            .output()
            .expect("run cargo metadata");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("metadata JSON")
    }

    /// The README's `cargo run --release -- serve all` has one binary to run: the workspace's
    /// default members hold exactly one, this one (another crate's binary, the benchmark's,
    /// once made `cargo run` refuse to choose).
    #[test]
    fn cargo_run_means_the_identity_provider() {
        let doc = cargo_metadata(&["--no-deps"]);
        let defaults: Vec<&str> = doc["workspace_default_members"]
            .as_array()
            .expect("default members")
            .iter()
            .filter_map(|m| m.as_str())
            .collect();
        let binaries: Vec<String> = doc["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .filter(|p| defaults.contains(&p["id"].as_str().unwrap_or_default()))
            .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
            .filter(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "bin"))
            })
            .filter_map(|t| t["name"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(binaries, ["opentrusty"]);
    }

    /// The admin plane cannot reach password verification or token signing: nothing the admin
    /// crate depends on, directly or through others (normal dependencies in `cargo metadata`'s
    /// resolved graph), is the auth plane, the protocol crate, the password crate or a library
    /// that hashes passwords or signs tokens.
    #[test]
    fn the_admin_crate_reaches_neither_signing_nor_sign_in() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        // Only this platform's packages are at hand offline.
        let version = std::process::Command::new(&cargo)
            .arg("-vV")
            .output()
            .expect("run cargo -vV");
        let host = String::from_utf8_lossy(&version.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
            .expect("cargo -vV names the host");
        let meta = cargo_metadata(&["--locked", "--filter-platform", &host]);
        let name_of = |id: &str| -> String {
            meta["packages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["id"] == id)
                .and_then(|p| p["name"].as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let nodes = meta["resolve"]["nodes"].as_array().unwrap();
        let admin = nodes
            .iter()
            .find(|n| name_of(n["id"].as_str().unwrap()) == "opentrusty-admin")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut reached = std::collections::BTreeSet::new();
        let mut next = vec![admin];
        while let Some(id) = next.pop() {
            let node = nodes.iter().find(|n| n["id"] == id.as_str()).unwrap();
            for dep in node["deps"].as_array().unwrap() {
                let normal = dep["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kind"].is_null());
                let pkg = dep["pkg"].as_str().unwrap().to_owned();
                if normal && reached.insert(name_of(&pkg)) {
                    next.push(pkg);
                }
            }
        }
        assert!(reached.contains("opentrusty-store"), "{reached:?}");
        for forbidden in [
            "opentrusty-auth",
            "opentrusty-oidc",
            "opentrusty-password",
            "argon2",
            "openssl",
            "rsa",
            "ed25519-dalek",
            "p256",
            "jsonwebtoken",
        ] {
            assert!(
                !reached.contains(forbidden),
                "crates/admin reaches {forbidden}"
            );
        }
    }

    fn d(auth: Option<&str>, admin: Option<&str>) -> Domains {
        Domains {
            auth: auth.map(str::to_owned),
            admin: admin.map(str::to_owned),
        }
    }

    #[test]
    fn hosts_choose_planes() {
        let both = d(Some("auth.example.com"), Some("api.example.com"));
        assert_eq!(
            choose(Planes::Both, &both, Some("auth.example.com")),
            Some(Planes::Auth)
        );
        assert_eq!(
            choose(Planes::Both, &both, Some("api.example.com")),
            Some(Planes::Admin)
        );
        assert_eq!(choose(Planes::Both, &both, Some("evil.example")), None);
        assert_eq!(choose(Planes::Both, &both, None), None);
        assert_eq!(
            choose(Planes::Both, &d(None, None), Some("x")),
            Some(Planes::Both)
        );
        assert_eq!(choose(Planes::Auth, &both, Some("api.example.com")), None);
        assert_eq!(choose(Planes::Auth, &both, Some("other")), None);
        assert_eq!(
            choose(Planes::Auth, &both, Some("auth.example.com")),
            Some(Planes::Auth)
        );
        assert_eq!(choose(Planes::Admin, &both, Some("auth.example.com")), None);
        assert_eq!(
            choose(Planes::Admin, &both, Some("api.example.com")),
            Some(Planes::Admin)
        );
        // Only the other plane's domain known: everything else is ours.
        let admin_only = d(None, Some("api.example.com"));
        assert_eq!(
            choose(Planes::Auth, &admin_only, Some("10.0.0.5")),
            Some(Planes::Auth)
        );
        assert_eq!(
            choose(Planes::Auth, &admin_only, Some("api.example.com")),
            None
        );
        assert_eq!(
            choose(Planes::Both, &admin_only, Some("10.0.0.5")),
            Some(Planes::Auth)
        );
    }
}
