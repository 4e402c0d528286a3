//! `opentrusty serve`: opens the database, checks (or, for the embedded development database,
//! applies) migrations, optionally bootstraps the first administrator, then serves the chosen
//! planes until SIGTERM or SIGINT, draining in-flight requests before it exits.

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use axum::Router;
use opentrusty_core::secret::MasterKey;
use opentrusty_store::{Backend, Store};
use opentrusty_web::edge::EdgeConfig;
use tokio::net::TcpListener;

use crate::Failure;
use crate::app::{Domains, PlaneRouters, Planes, listener_app};
use crate::commands;
use crate::config::{Mode, SecretSource, ServeSettings};
use crate::connections::{self, ConnectionLimits};

/// Connections the metrics listener holds at once: a scraper or two (reserved in the
/// descriptor budget of the configuration).
const METRICS_CONNECTIONS: usize = 16;

pub async fn run(settings: ServeSettings) -> Result<(), Failure> {
    let master_key = match &settings.secret {
        SecretSource::Configured(key) => key.clone(),
        SecretSource::DevelopmentFile(path) => development_key(path)?,
    };
    let store = commands::open(&settings.database).await?;
    if settings.mode == Mode::All && settings.database.backend == Backend::Sqlite {
        let applied = store
            .migrate()
            .await
            .map_err(|e| Failure(format!("cannot migrate the embedded database: {e}")))?;
        if !applied.is_empty() {
            tracing::info!(?applied, "applied migrations to the embedded database");
        }
    } else {
        commands::require_current_schema(&store).await?;
    }
    store.ensure_writable().await.map_err(|e| {
        Failure(format!(
            "{e}: is the database file or its file system read-only, or the disk full?"
        ))
    })?;
    if let Some(admin) = &settings.bootstrap {
        let mut err = std::io::stderr();
        commands::bootstrap(&store, &settings.hasher, admin, &mut err).await?;
    }

    let auth = match settings.mode {
        Mode::Admin => None,
        Mode::Auth | Mode::All => {
            let state = opentrusty_auth::AuthState::new(
                store.clone(),
                master_key.clone(),
                settings.auth.clone(),
                settings.hasher.clone(),
            );
            // Every auth process makes sure the default key exists before it serves; racing
            // processes end with one active key.
            let mut algs = vec![opentrusty_oidc::jose::Algorithm::RS256];
            if settings.auth.access_token_alg != algs[0] {
                algs.push(settings.auth.access_token_alg);
            }
            for alg in algs {
                state
                    .keys()
                    .ensure(alg)
                    .await
                    .map_err(|e| Failure(format!("cannot prepare the signing keys: {e}")))?;
            }
            // Peers judge replays by what this process publishes: it is listed before it
            // spends anything.
            store
                .publish_settlement()
                .await
                .map_err(|e| Failure(format!("cannot register with the database: {e}")))?;
            Some(state)
        }
    };

    let listeners = bind(&settings).await?;
    let admin_settings = settings.admin_settings();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    let mut servers = tokio::task::JoinSet::new();
    if let Some(addr) = settings.ops.metrics_addr {
        let listener = connections::bind(addr)
            .map_err(|e| Failure(format!("cannot listen for metrics on {addr}: {e}")))?;
        tracing::info!(%addr, "serving metrics");
        let app = metrics_app(store.clone());
        let limits = ConnectionLimits {
            max_connections: METRICS_CONNECTIONS,
            ..settings.connections
        };
        servers.spawn(connections::serve(listener, app, limits, stop_rx.clone()));
    }
    if auth.is_some() {
        tokio::spawn(settle_grant_writes(store.clone(), stop_rx.clone()));
        // The key set of this process follows rotations made by any other as they commit.
        let (store, stop) = (store.clone(), stop_rx.clone());
        tokio::spawn(async move { store.follow_changes(stop).await });
    }
    tokio::spawn(watch_outage(store.clone(), stop_rx.clone()));
    if let (Some(_), Some(every)) = (&auth, settings.ops.janitor_interval) {
        tokio::spawn(janitor(store.clone(), every, stop_rx.clone()));
    }
    for (addr, listener, app) in listeners.into_iter().map(|(a, l, plane)| {
        (
            a,
            l,
            app_for(
                plane,
                &settings,
                &store,
                &master_key,
                auth.as_ref(),
                &admin_settings,
            ),
        )
    }) {
        tracing::info!(
            mode = settings.mode.as_str(),
            %addr,
            max_connections = settings.connections.max_connections,
            "listening"
        );
        servers.spawn(connections::serve(
            listener,
            app,
            settings.connections,
            stop_rx.clone(),
        ));
    }

    tokio::select! {
        signal = shutdown_signal() => tracing::info!(signal, "shutting down: draining in-flight requests"),
        Some(done) = servers.join_next() => {
            // A server ended without being asked to: report it.
            return Err(Failure(format!("HTTP server stopped unexpectedly: {done:?}")));
        }
    }
    drop(stop_tx);
    let drained = tokio::time::timeout(settings.shutdown_timeout, async {
        while servers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            timeout_secs = settings.shutdown_timeout.as_secs(),
            "shutdown timeout reached; closing remaining connections"
        );
        servers.abort_all();
    }
    if auth.is_some() && !store.retire_settlement().await {
        tracing::warn!(
            "stopping with grant writes whose outcome is unknown; other processes will wait \
             for them before judging replays"
        );
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn bind(settings: &ServeSettings) -> Result<Vec<(SocketAddr, TcpListener, Planes)>, Failure> {
    let wanted = match settings.mode {
        Mode::Auth => vec![(settings.auth_port, Planes::Auth)],
        Mode::Admin => vec![(settings.admin_port, Planes::Admin)],
        Mode::All => vec![(settings.auth_port, Planes::Both)],
    };
    let mut bound = Vec::new();
    for (port, planes) in wanted {
        let addr = SocketAddr::new(settings.bind, port);
        let listener = connections::bind(addr)
            .map_err(|e| Failure(format!("cannot listen on {addr}: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| Failure(format!("cannot read the listening address: {e}")))?;
        bound.push((local, listener, planes));
    }
    Ok(bound)
}

/// The application of one listener: its planes' routes (routed by host when domains are set),
/// the probes, and the edge layer.
fn app_for(
    planes: Planes,
    settings: &ServeSettings,
    store: &Store,
    master_key: &MasterKey,
    auth: Option<&opentrusty_auth::AuthState>,
    admin_settings: &opentrusty_admin::AdminSettings,
) -> Router {
    let mark = |plane: &'static str, r: Router| {
        r.layer(axum::middleware::from_fn_with_state(
            plane,
            opentrusty_web::edge::mark,
        ))
    };
    let serves_auth = planes != Planes::Admin;
    let serves_admin = planes != Planes::Auth;
    let routers = PlaneRouters {
        auth: auth
            .filter(|_| serves_auth)
            .map(|state| mark("auth", opentrusty_auth::router(state.clone()))),
        admin: serves_admin.then(|| {
            mark(
                "admin",
                opentrusty_admin::router(opentrusty_admin::AdminState::new(
                    store.clone(),
                    master_key.clone(),
                    admin_settings.clone(),
                )),
            )
        }),
        probes: mark(
            "probe",
            opentrusty_web::probes(listener_name(planes), store.clone(), serves_auth),
        ),
    };
    listener_app(
        planes,
        Domains {
            auth: settings.ops.auth_domain.clone(),
            admin: settings.ops.admin_domain.clone(),
        },
        routers,
        EdgeConfig {
            listener: listener_name(planes),
            trusted: settings.ops.trusted_proxies.clone(),
        },
    )
}

fn listener_name(planes: Planes) -> &'static str {
    match planes {
        Planes::Auth => opentrusty_auth::SERVICE,
        Planes::Admin => opentrusty_admin::SERVICE,
        Planes::Both => "opentrusty",
    }
}

/// The metrics listener: `GET /metrics` in the Prometheus text format, nothing else.
fn metrics_app(store: Store) -> Router {
    Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let store = store.clone();
            async move {
                let (open, idle, max) = store.pool_status();
                let body = opentrusty_web::metrics::render(&[
                    (
                        "opentrusty_db_pool_connections",
                        "Database connections open in this process's pool",
                        f64::from(open),
                    ),
                    (
                        "opentrusty_db_pool_idle_connections",
                        "Open database connections not in use",
                        f64::from(idle),
                    ),
                    (
                        "opentrusty_db_pool_max_connections",
                        "Upper bound of this process's pool",
                        f64::from(max),
                    ),
                ]);
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    body,
                )
            }
        }),
    )
}

/// Rows deleted per statement and statements per kind in one janitor run.
pub const JANITOR_BATCH: u32 = 500;
pub const JANITOR_MAX_BATCHES: u32 = 200;

/// Deletes expired rows every `every` until shutdown; a failed run is logged and retried at the
/// next tick.
async fn janitor(
    store: Store,
    every: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<()>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        match store
            .sweep_expired(opentrusty_core::now(), JANITOR_BATCH, JANITOR_MAX_BATCHES)
            .await
        {
            Ok(swept) if swept.total() > 0 => {
                tracing::info!(?swept, "janitor deleted expired rows")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "janitor run failed; retrying at the next run"),
        }
    }
}

/// Settles this process's grant writes in doubt and publishes up to when its writes are
/// settled, until shutdown (docs/design/in-doubt-grant-writes.md).
async fn settle_grant_writes(store: Store, mut stop: tokio::sync::watch::Receiver<()>) {
    let mut tick = tokio::time::interval(opentrusty_store::SETTLEMENT_PUBLISH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        store.settle_doubts().await;
        // An outage is reported by the requests it fails; this would only repeat it.
        if let Err(e) = store.publish_settlement().await {
            tracing::debug!(error = %e, "cannot publish the settlement of grant writes");
        }
    }
}

/// While requests are being refused for want of the database, checks every second whether it
/// takes writes again, so the end of an outage is logged when it ends.
async fn watch_outage(store: Store, mut stop: tokio::sync::watch::Receiver<()>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if opentrusty_store::outage::ongoing() && store.ensure_writable().await.is_ok() {
            opentrusty_store::outage::answered();
        }
    }
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; only SIGINT will stop the server");
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}

/// Reads the development key beside the SQLite file, creating it (mode 0600) on first use.
pub fn development_key(path: &Path) -> Result<MasterKey, Failure> {
    let created = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            let key = MasterKey::generate();
            writeln!(file, "{}", key.to_base64())
                .and_then(|()| file.sync_all())
                .map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))?;
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(Failure(format!("cannot create {}: {e}", path.display()))),
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure(format!("cannot read {}: {e}", path.display())))?;
    let key = MasterKey::parse(&text)
        .map_err(|e| Failure(format!("{}: the key {}", path.display(), e.message)))?;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "the secret key file is readable by other users; chmod 600 it");
    }
    tracing::warn!(
        path = %path.display(),
        created,
        "using a development secret key stored beside the SQLite database; \
         set OPENTRUSTY_SECRET_KEY for anything but local development"
    );
    Ok(key)
}
