//! The one-shot commands (`migrate`, `bootstrap`) and the steps `serve` shares with them.

use std::io::Write;

use opentrusty_core::audit::Origin;
use opentrusty_core::password::generate_password;
use opentrusty_password::PasswordHasher;
use opentrusty_store::{BootstrapOutcome, LockKind, Store};

use crate::Failure;
use crate::config::{BootstrapSettings, DatabaseSettings, ServeSettings};

/// Length of generated administrator passwords.
const GENERATED_PASSWORD_CHARS: usize = 24;

pub async fn open(db: &DatabaseSettings) -> Result<Store, Failure> {
    Store::connect(&db.url, &db.connect).await.map_err(|e| {
        Failure(format!(
            "cannot open the {} database: {e}",
            db.backend.as_str()
        ))
    })
}

/// Fails with advice when the schema is behind this binary.
pub async fn require_current_schema(store: &Store) -> Result<(), Failure> {
    let status = store
        .migration_status()
        .await
        .map_err(|e| Failure(format!("cannot read the migration ledger: {e}")))?;
    if status.pending.is_empty() {
        return Ok(());
    }
    let versions: Vec<String> = status.pending.iter().map(|(v, _)| v.to_string()).collect();
    Err(Failure(format!(
        "the database schema is not current: {} migration(s) pending (version {}); run `opentrusty migrate` first",
        versions.len(),
        versions.join(", ")
    )))
}

/// `opentrusty migrate --dry-run`: every pending migration, and for each table it locks what
/// the planes would notice and for about how long, from the table's size now. Changes nothing.
pub async fn migrate_dry_run(store: &Store, out: &mut dyn Write) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure(format!("cannot write output: {e}"));
    let status = store
        .migration_status()
        .await
        .map_err(|e| Failure(format!("cannot read the migration ledger: {e}")))?;
    if status.pending.is_empty() {
        writeln!(out, "the schema is up to date; nothing would be applied").map_err(io)?;
        return Ok(());
    }
    for (version, _) in &status.pending {
        let Some(m) = opentrusty_store::MIGRATIONS
            .iter()
            .find(|m| m.version == *version)
        else {
            continue;
        };
        writeln!(out, "would apply migration {} ({})", m.version, m.name).map_err(io)?;
        if m.locks.is_empty() {
            writeln!(out, "  locks no existing table").map_err(io)?;
        }
        for lock in m.locks {
            let rows = store
                .estimated_rows(lock.table)
                .await
                .map_err(|e| Failure(format!("cannot read the size of {}: {e}", lock.table)))?;
            let size = match rows {
                Some(n) => format!("about {n} rows"),
                // Created by an earlier migration of this run: empty when this one runs.
                None => "created by this run".to_owned(),
            };
            // A definition change held across a scan of the same table lasts as long as it.
            let held_across = match lock.kind {
                LockKind::Definition => m.slowest_scan_of(lock.table),
                _ => None,
            };
            let effect = match held_across {
                Some(_) => {
                    "every statement on it, reads too, waits until the migration commits \
                            (its definition changes, then the table is scanned)"
                }
                None => lock.kind.effect(),
            };
            let lasts = held_across.unwrap_or(lock.kind);
            let estimate = match (lasts.scans(), rows) {
                (true, Some(n)) => format!(
                    "; expected {:.0} ms",
                    (n as f64 / 1e6 * lasts.ms_per_million_rows()).max(1.0)
                ),
                _ => String::new(),
            };
            writeln!(out, "  {} ({size}): {effect}{estimate}", lock.table).map_err(io)?;
        }
    }
    writeln!(
        out,
        "{} migration(s) would be applied; nothing was changed",
        status.pending.len()
    )
    .map_err(io)?;
    Ok(())
}

/// `opentrusty migrate [--status]`.
pub async fn migrate(store: &Store, status_only: bool, out: &mut dyn Write) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure(format!("cannot write output: {e}"));
    if !status_only {
        let applied = store
            .migrate()
            .await
            .map_err(|e| Failure(format!("migration failed: {e}")))?;
        for version in &applied {
            let name = opentrusty_store::MIGRATIONS
                .iter()
                .find(|m| m.version == *version)
                .map_or("", |m| m.name);
            writeln!(out, "applied migration {version} ({name})").map_err(io)?;
        }
        if applied.is_empty() {
            writeln!(out, "the schema is up to date; nothing to apply").map_err(io)?;
        }
        return Ok(());
    }
    let status = store
        .migration_status()
        .await
        .map_err(|e| Failure(format!("cannot read the migration ledger: {e}")))?;
    writeln!(out, "{:<8} {:<24} STATE", "VERSION", "NAME").map_err(io)?;
    for m in &status.applied {
        let at = m
            .applied_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        writeln!(out, "{:<8} {:<24} applied {at}", m.version, m.name).map_err(io)?;
    }
    for (version, name) in &status.pending {
        writeln!(out, "{version:<8} {name:<24} pending").map_err(io)?;
    }
    writeln!(
        out,
        "{} applied, {} pending",
        status.applied.len(),
        status.pending.len()
    )
    .map_err(io)?;
    Ok(())
}

/// `opentrusty keys list`.
pub async fn list_keys(store: &Store, out: &mut dyn Write) -> Result<(), crate::Exit> {
    let io = |e: std::io::Error| Failure(format!("cannot write output: {e}"));
    let keys = store
        .list_signing_keys()
        .await
        .map_err(|e| Failure(format!("cannot read the signing keys: {e}")))?;
    let date = |t: Option<opentrusty_core::Timestamp>| {
        t.and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "-".to_owned())
    };
    writeln!(
        out,
        "{:<44} {:<6} {:<8} {:<28} {:<28} PUBLISHED UNTIL",
        "KID", "ALG", "STATUS", "CREATED", "ACTIVATED"
    )
    .map_err(io)?;
    for k in &keys {
        writeln!(
            out,
            "{:<44} {:<6} {:<8} {:<28} {:<28} {}",
            k.kid,
            k.alg,
            k.status,
            date(Some(k.created_at)),
            date(k.activated_at),
            date(k.publish_until)
        )
        .map_err(io)?;
    }
    writeln!(out, "{} key(s)", keys.len()).map_err(io)?;
    Ok(())
}

/// `opentrusty keys rotate`: the next key signs from now on, the active one is retired and
/// published until every token it signed has expired, and a new next key is created.
pub async fn rotate_keys(
    store: &Store,
    master_key: &opentrusty_core::secret::MasterKey,
    alg: &str,
    out: &mut dyn Write,
) -> Result<(), crate::Exit> {
    let Some(alg) = opentrusty_oidc::jose::Algorithm::parse(alg) else {
        return Err(crate::Exit::Config(crate::config::ConfigError {
            name: "--alg".to_owned(),
            problem: format!("{alg:?} is not RS256, ES256 or EdDSA"),
        }));
    };
    let next = {
        let master_key = master_key.clone();
        tokio::task::spawn_blocking(move || opentrusty_auth::keys::new_sealed_key(alg, &master_key))
            .await
            .map_err(|e| Failure(format!("key generation failed: {e}")))?
            .map_err(|e| Failure(format!("key generation failed: {e}")))?
    };
    let longest = store
        .longest_token_lifetime_secs()
        .await
        .map_err(|e| Failure(format!("cannot read client lifetimes: {e}")))?;
    // Keep a retired key published past the longest token lifetime, plus verifiers' JWKS
    // cache time.
    let until = opentrusty_core::now() + time::Duration::seconds(longest.max(3600) + 600);
    let active = store
        .rotate_signing_keys(&next, until, &Origin::system())
        .await
        .map_err(|e| Failure(format!("rotation failed: {e}")))?;
    writeln!(
        out,
        "rotated {} keys: {active} now signs; {} is next",
        alg.as_str(),
        next.kid
    )
    .map_err(|e| Failure(format!("cannot write output: {e}")))?;
    Ok(())
}

/// Creates the first platform administrator unless one exists. A generated password is written
/// to `out` once and nowhere else.
pub async fn bootstrap(
    store: &Store,
    hasher: &PasswordHasher,
    admin: &BootstrapSettings,
    out: &mut dyn Write,
) -> Result<BootstrapOutcome, Failure> {
    let io = |e: std::io::Error| Failure(format!("cannot write output: {e}"));
    let db = |e: opentrusty_store::StoreError| Failure(format!("bootstrap failed: {e}"));
    let exists_message = "a platform administrator already exists; nothing was changed";
    if store.platform_admin_exists().await.map_err(db)? {
        writeln!(out, "{exists_message}").map_err(io)?;
        return Ok(BootstrapOutcome::AlreadyPresent);
    }
    let (password, generated) = match &admin.password {
        Some(p) => (p.clone(), false),
        None => (generate_password(GENERATED_PASSWORD_CHARS), true),
    };
    let hash = {
        let hasher = hasher.clone();
        let password = password.clone();
        tokio::task::spawn_blocking(move || hasher.hash(&password))
            .await
            .map_err(|e| Failure(format!("password hashing failed: {e}")))?
    };
    let outcome = store
        .bootstrap_platform_admin(&admin.email, &hash, &Origin::system())
        .await
        .map_err(db)?;
    match outcome {
        BootstrapOutcome::Created(id) => {
            writeln!(
                out,
                "created platform administrator {} (user {id})",
                admin.email.as_str()
            )
            .map_err(io)?;
            if generated {
                writeln!(
                    out,
                    "generated password, shown only this once: {password}\n\
                     store it now; set OPENTRUSTY_BOOTSTRAP_ADMIN_PASSWORD to choose one instead"
                )
                .map_err(io)?;
            }
        }
        BootstrapOutcome::AlreadyPresent => writeln!(out, "{exists_message}").map_err(io)?,
    }
    Ok(outcome)
}

/// `opentrusty cleanup`: one janitor run, without a limit on batches.
pub async fn cleanup(store: &Store, out: &mut dyn Write) -> Result<(), Failure> {
    let swept = store
        .sweep_expired(
            opentrusty_core::now(),
            crate::serve::JANITOR_BATCH,
            u32::MAX,
        )
        .await
        .map_err(|e| Failure(format!("cleanup failed: {e}")))?;
    writeln!(
        out,
        "deleted {} expired rows: {} sessions, {} authorization codes, {} access tokens, \
         {} token families (with their refresh tokens), {} enrollment links",
        swept.total(),
        swept.sessions,
        swept.authorization_codes,
        swept.access_tokens,
        swept.token_families,
        swept.enrollment_links
    )
    .map_err(|e| Failure(format!("cannot write output: {e}")))
}

/// A database URL fit to print: the password replaced.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// `opentrusty check <mode>`: what `serve <mode>` would do with this configuration, and whether
/// the database is ready for it.
pub async fn check(settings: &ServeSettings, out: &mut dyn Write) -> Result<(), Failure> {
    use crate::config::{Mode, SecretSource};
    let io = |e: std::io::Error| Failure(format!("cannot write output: {e}"));
    let mode = settings.mode;
    let db = &settings.database;
    let mut lines = vec![
        format!("mode: {}", mode.as_str()),
        format!("database: {} ({})", redacted(&db.url), db.backend.as_str()),
        format!("pool: up to {} connections", db.connect.max_connections),
    ];
    let listen = |port: u16, what: &str| format!("listen: {}:{port} ({what})", settings.bind);
    match mode {
        Mode::Auth => lines.push(listen(settings.auth_port, "auth plane")),
        Mode::Admin => lines.push(listen(settings.admin_port, "admin plane")),
        Mode::All => lines.push(listen(settings.auth_port, "auth and admin planes")),
    }
    let c = &settings.connections;
    lines.push(format!(
        "connections: up to {} open (open-files limit {}); request heads within {} s, \
         keep-alive {} s",
        c.max_connections,
        crate::connections::open_files_limit().map_or("unlimited".to_owned(), |n| n.to_string()),
        c.header_read_timeout.as_secs(),
        c.keep_alive_timeout.as_secs()
    ));
    lines.push(format!("issuer: {}", settings.auth.issuer));
    let ops = &settings.ops;
    lines.push(match (&ops.auth_domain, &ops.admin_domain) {
        (None, None) => "routing: by port".to_owned(),
        (a, b) => format!(
            "routing: by host (auth: {}, admin: {}; other hosts get 421)",
            a.as_deref().unwrap_or("any other host"),
            b.as_deref().unwrap_or("any other host")
        ),
    });
    let proxies: Vec<String> = ops
        .trusted_proxies
        .ranges()
        .iter()
        .map(ToString::to_string)
        .collect();
    lines.push(format!(
        "trusted proxies: {}",
        if proxies.is_empty() {
            "none (forwarded headers ignored)".to_owned()
        } else {
            format!(
                "{} (client address from {} only)",
                proxies.join(", "),
                ops.trusted_proxies.header().as_str()
            )
        }
    ));
    lines.push(format!(
        "console origins: {}",
        if settings.admin.console_origins.is_empty() {
            "none".to_owned()
        } else {
            settings.admin.console_origins.join(", ")
        }
    ));
    lines.push(match ops.metrics_addr {
        Some(a) => format!("metrics: http://{a}/metrics"),
        None => "metrics: off".to_owned(),
    });
    if mode != Mode::Admin {
        lines.push(match ops.janitor_interval {
            Some(d) => format!("janitor: every {} s", d.as_secs()),
            None => "janitor: off".to_owned(),
        });
    }
    lines.push(match &settings.secret {
        SecretSource::Configured(_) => "secret key: configured".to_owned(),
        SecretSource::DevelopmentFile(p) => format!(
            "secret key: development file {} ({})",
            p.display(),
            if p.exists() {
                "present"
            } else {
                "created at first start"
            }
        ),
    });
    for line in &lines {
        writeln!(out, "{line}").map_err(io)?;
    }

    let store = match tokio::time::timeout(std::time::Duration::from_secs(10), open(db)).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(Failure(
                "the database did not answer within 10 s".to_owned(),
            ));
        }
    };
    let result = async {
        store
            .ping()
            .await
            .map_err(|e| Failure(format!("the database is unreachable: {e}")))?;
        let status = store
            .migration_status()
            .await
            .map_err(|e| Failure(format!("cannot read the migration ledger: {e}")))?;
        let auto_migrates = mode == Mode::All && db.backend == opentrusty_store::Backend::Sqlite;
        if status.pending.is_empty() {
            writeln!(out, "schema: current").map_err(io)?;
        } else if auto_migrates {
            writeln!(
                out,
                "schema: {} migration(s) pending, applied at start",
                status.pending.len()
            )
            .map_err(io)?;
        } else {
            require_current_schema(&store).await?;
        }
        if mode != Mode::Admin && status.pending.is_empty() {
            let key = store
                .has_active_signing_key("RS256")
                .await
                .map_err(|e| Failure(format!("cannot read the signing keys: {e}")))?;
            writeln!(
                out,
                "signing key: {}",
                if key {
                    "active RS256 key present"
                } else {
                    "none yet (created at first start)"
                }
            )
            .map_err(io)?;
        }
        writeln!(out, "ok: ready to serve").map_err(io)
    }
    .await;
    store.close().await;
    result
}
