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
use tokio::net::TcpListener;

use crate::Failure;
use crate::commands;
use crate::config::{Mode, SecretSource, ServeSettings};

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
            state
                .keys()
                .ensure(opentrusty_oidc::jose::Algorithm::RS256)
                .await
                .map_err(|e| Failure(format!("cannot prepare the signing keys: {e}")))?;
            Some(state)
        }
    };

    let listeners = bind(&settings).await?;
    let admin_settings = settings.admin_settings();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    let mut servers = tokio::task::JoinSet::new();
    for (addr, listener, app) in listeners.into_iter().map(|(a, l, plane)| {
        (
            a,
            l,
            app_for(plane, &store, &master_key, auth.as_ref(), &admin_settings),
        )
    }) {
        tracing::info!(mode = settings.mode.as_str(), %addr, "listening");
        let mut stop = stop_rx.clone();
        servers.spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stop.changed().await;
            })
            .await
        });
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
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// The planes one listener serves.
#[derive(Debug, Clone, Copy)]
enum Planes {
    Auth,
    Admin,
    Both,
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
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| Failure(format!("cannot listen on {addr}: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| Failure(format!("cannot read the listening address: {e}")))?;
        bound.push((local, listener, planes));
    }
    Ok(bound)
}

/// The router of one listener: its planes' routes, the probes once, and a JSON 404.
fn app_for(
    planes: Planes,
    store: &Store,
    master_key: &MasterKey,
    auth: Option<&opentrusty_auth::AuthState>,
    admin_settings: &opentrusty_admin::AdminSettings,
) -> Router {
    let auth = || match auth {
        Some(state) => opentrusty_auth::router(state.clone()),
        None => Router::new(),
    };
    let admin = || {
        opentrusty_admin::router(opentrusty_admin::AdminState::new(
            store.clone(),
            master_key.clone(),
            admin_settings.clone(),
        ))
    };
    let (routes, service) = match planes {
        Planes::Auth => (auth(), opentrusty_auth::SERVICE),
        Planes::Admin => (admin(), opentrusty_admin::SERVICE),
        Planes::Both => (auth().merge(admin()), "opentrusty"),
    };
    routes
        .merge(opentrusty_web::probes(service, store.clone()))
        .fallback(opentrusty_web::not_found)
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
