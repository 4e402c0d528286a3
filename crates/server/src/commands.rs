//! The one-shot commands (`migrate`, `bootstrap`) and the steps `serve` shares with them.

use std::io::Write;

use opentrusty_core::audit::Origin;
use opentrusty_core::password::{PasswordHasher, generate_password};
use opentrusty_store::{BootstrapOutcome, Store};

use crate::Failure;
use crate::config::{BootstrapSettings, DatabaseSettings};

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
