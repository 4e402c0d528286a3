//! The auth process's view of the signing keys: loaded from the database, private halves
//! decrypted with the master key, and kept until the store counts a key change (a rotation by
//! any process, announced by PostgreSQL as it commits), so a request never waits for the
//! database to sign and every process signs with the new key as soon as it is active.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use opentrusty_core::audit::Origin;
use opentrusty_core::secret::MasterKey;
use opentrusty_oidc::jose::{self, Algorithm, Header, JoseError, SigningKey, VerifyingKey};
use opentrusty_store::{NewSigningKey, Store, StoreError};
use serde_json::{Value, json};

/// How long a process trusts its copy of the key set without a counted change: the bound for
/// what no notification reaches (several processes on one SQLite file, a listening connection
/// whose network went silent).
const CACHE_TTL: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub enum KeyError {
    Store(StoreError),
    Jose(JoseError),
    /// No active key for the algorithm even after trying to create one.
    Missing(Algorithm),
}

impl KeyError {
    /// Logs the failure: a database outage is counted with the others of its outage, anything
    /// else is an error of its own.
    pub(crate) fn report(&self) {
        match self {
            KeyError::Store(e) if e.is_unavailable() => opentrusty_store::outage::refused(e),
            other => tracing::error!(error = %other, "signing keys unavailable"),
        }
    }
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyError::Store(e) => write!(f, "{e}"),
            KeyError::Jose(e) => write!(f, "{e}"),
            KeyError::Missing(a) => write!(f, "no active {} signing key", a.as_str()),
        }
    }
}

impl From<StoreError> for KeyError {
    fn from(e: StoreError) -> Self {
        KeyError::Store(e)
    }
}

impl From<JoseError> for KeyError {
    fn from(e: JoseError) -> Self {
        KeyError::Jose(e)
    }
}

struct KeySet {
    loaded: Instant,
    /// The store's count of key changes when this set was read.
    changes: u64,
    signing: HashMap<Algorithm, Arc<SigningKey>>,
    verifying: Vec<VerifyingKey>,
    jwks: Arc<String>,
}

/// Shared, cached signing and verification keys.
pub struct KeyRing {
    store: Store,
    master_key: MasterKey,
    cache: RwLock<Option<Arc<KeySet>>>,
    /// Set while this process prepares a next key in the background.
    preparing_next: Arc<AtomicBool>,
}

/// Generates a key for `alg` and seals its private half for storage.
pub fn new_sealed_key(alg: Algorithm, master: &MasterKey) -> Result<NewSigningKey, JoseError> {
    let (key, der) = SigningKey::generate(alg)?;
    let sealed = jose::seal(master, &der, key.kid().as_bytes())?;
    Ok(NewSigningKey {
        kid: key.kid().to_owned(),
        alg: alg.as_str().to_owned(),
        public_jwk: key.public_jwk(),
        private_key_ciphertext: sealed,
    })
}

async fn new_sealed_key_off_thread(
    alg: Algorithm,
    master: &MasterKey,
) -> Result<NewSigningKey, KeyError> {
    let master = master.clone();
    // RSA generation takes tens of milliseconds: keep it off the async workers.
    tokio::task::spawn_blocking(move || new_sealed_key(alg, &master))
        .await
        .map_err(|_| KeyError::Missing(alg))?
        .map_err(KeyError::from)
}

impl KeyRing {
    pub fn new(store: Store, master_key: MasterKey) -> Self {
        Self {
            store,
            master_key,
            cache: RwLock::new(None),
            preparing_next: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Makes sure an active and a next key exist for `alg`. Safe to race with other processes:
    /// exactly one set is installed.
    pub async fn ensure(&self, alg: Algorithm) -> Result<(), KeyError> {
        if self.store.has_active_signing_key(alg.as_str()).await? {
            return Ok(());
        }
        let active = new_sealed_key_off_thread(alg, &self.master_key).await?;
        let next = new_sealed_key_off_thread(alg, &self.master_key).await?;
        let installed = self
            .store
            .install_first_signing_keys(&active, &next, &Origin::system())
            .await?;
        if installed {
            tracing::info!(alg = alg.as_str(), kid = %active.kid, "created the first signing key");
        }
        self.invalidate();
        Ok(())
    }

    fn invalidate(&self) {
        if let Ok(mut c) = self.cache.write() {
            *c = None;
        }
    }

    async fn load(&self) -> Result<Arc<KeySet>, KeyError> {
        // Counted before reading, so a change committed during the read makes the set stale.
        let changes = self.store.key_changes();
        let stored = self
            .store
            .published_signing_keys(opentrusty_core::now())
            .await?;
        let mut signing = HashMap::new();
        let mut with_next = Vec::new();
        let mut verifying = Vec::with_capacity(stored.len());
        let mut jwks = Vec::with_capacity(stored.len());
        for key in &stored {
            let Some(alg) = Algorithm::parse(&key.alg) else {
                continue;
            };
            verifying.push(VerifyingKey::from_jwk(&key.public_jwk)?);
            jwks.push(key.public_jwk.clone());
            if key.status == "next" {
                with_next.push(alg);
            }
            if key.status == "active" {
                let der = jose::open(
                    &self.master_key,
                    &key.private_key_ciphertext,
                    key.kid.as_bytes(),
                )?;
                signing.insert(alg, Arc::new(SigningKey::from_pkcs8(alg, &der)?));
            }
        }
        let without_next: Vec<Algorithm> = signing
            .keys()
            .filter(|a| !with_next.contains(a))
            .copied()
            .collect();
        if !without_next.is_empty() {
            self.prepare_next_keys(without_next);
        }
        let set = Arc::new(KeySet {
            loaded: Instant::now(),
            changes,
            signing,
            verifying,
            jwks: Arc::new(json!({ "keys": jwks }).to_string()),
        });
        if let Ok(mut c) = self.cache.write() {
            *c = Some(set.clone());
        }
        Ok(set)
    }

    /// After a rotation promoted the next key, prepares a new next key for each algorithm in
    /// the background, so it is published ahead of the rotation that will activate it. At most
    /// one preparation runs per process; the store keeps one next key per algorithm.
    fn prepare_next_keys(&self, algs: Vec<Algorithm>) {
        if self.preparing_next.swap(true, Ordering::AcqRel) {
            return;
        }
        let (store, master, flag) = (
            self.store.clone(),
            self.master_key.clone(),
            self.preparing_next.clone(),
        );
        tokio::spawn(async move {
            for alg in algs {
                let stored = match new_sealed_key_off_thread(alg, &master).await {
                    Ok(next) => store
                        .install_next_signing_key(&next, &Origin::system())
                        .await
                        .map(|installed| installed.then_some(next.kid)),
                    Err(e) => {
                        tracing::error!(alg = alg.as_str(), error = %e, "could not prepare a next key");
                        continue;
                    }
                };
                match stored {
                    Ok(Some(kid)) => {
                        tracing::info!(alg = alg.as_str(), %kid, "prepared the next signing key")
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(alg = alg.as_str(), error = %e, "could not store a next key")
                    }
                }
            }
            flag.store(false, Ordering::Release);
        });
    }

    async fn current(&self) -> Result<Arc<KeySet>, KeyError> {
        let cached = self.cache.read().ok().and_then(|c| c.clone());
        match cached {
            Some(set)
                if set.changes == self.store.key_changes() && set.loaded.elapsed() < CACHE_TTL =>
            {
                Ok(set)
            }
            _ => self.load().await,
        }
    }

    /// The key that signs with `alg` now, creating the algorithm's first keys if needed.
    pub async fn signer(&self, alg: Algorithm) -> Result<Arc<SigningKey>, KeyError> {
        if let Some(k) = self.current().await?.signing.get(&alg) {
            return Ok(k.clone());
        }
        self.ensure(alg).await?;
        self.load()
            .await?
            .signing
            .get(&alg)
            .cloned()
            .ok_or(KeyError::Missing(alg))
    }

    /// Verifies a token we signed; an unknown kid triggers one reload (a key created by another
    /// process since the last load).
    pub async fn verify(&self, token: &str) -> Result<(Header, Value), KeyError> {
        let set = self.current().await?;
        match jose::verify(token, &set.verifying) {
            Ok(ok) => Ok(ok),
            Err(_) if set.loaded.elapsed() > Duration::from_secs(1) => {
                let fresh = self.load().await?;
                Ok(jose::verify(token, &fresh.verifying)?)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The JWKS document.
    pub async fn jwks(&self) -> Result<Arc<String>, KeyError> {
        Ok(self.current().await?.jwks.clone())
    }
}
