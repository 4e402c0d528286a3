//! Clients remembered for client-credentials issuance, per process. A remembered client never
//! lets a request through on its own: the statement that records the token confirms the client
//! is still at the revision it was remembered at (`Store::issue_client_token`), and the caller
//! reads afresh whenever a remembered copy refuses or fails confirmation. So a change made by
//! any process (a rotated secret, a disabled or deleted client, a suspended tenant) takes effect
//! here at once; what the memory saves is the read, not the check.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::{ClientAccess, Store, StoreError};

/// Clients remembered at most; past it the memory starts over (only clients that exist are
/// remembered, so unknown ids sent by anyone cannot fill it).
const CAPACITY: usize = 1024;

#[derive(Default)]
pub(crate) struct RememberedClients {
    by_client_id: Mutex<HashMap<String, Arc<ClientAccess>>>,
}

impl RememberedClients {
    fn get(&self, client_id: &str) -> Option<Arc<ClientAccess>> {
        let map = self
            .by_client_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(client_id).cloned()
    }

    fn put(&self, client_id: &str, access: Option<Arc<ClientAccess>>) {
        let mut map = self
            .by_client_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match access {
            Some(access) => {
                match map.get(client_id) {
                    // A read that finished late does not replace a newer one.
                    Some(known) if known.revision > access.revision => return,
                    Some(_) => {}
                    None if map.len() >= CAPACITY => map.clear(),
                    None => {}
                }
                map.insert(client_id.to_owned(), access);
            }
            None => {
                map.remove(client_id);
            }
        }
    }
}

/// A client for a client-credentials request, and whether it is a remembered copy (which may
/// be older than the database: decide on it only through [`Store::issue_client_token`], and
/// read afresh before refusing on it).
#[derive(Debug, Clone)]
pub struct IssuingClient {
    pub access: Arc<ClientAccess>,
    pub remembered: bool,
}

impl Store {
    /// The live client with this public id for a client-credentials request: the remembered
    /// copy when there is one and `fresh` is false, else read now (and remembered).
    pub async fn find_client_for_issuance(
        &self,
        client_id: &str,
        fresh: bool,
    ) -> Result<Option<IssuingClient>, StoreError> {
        if !fresh && let Some(access) = self.remembered_clients.get(client_id) {
            return Ok(Some(IssuingClient {
                access,
                remembered: true,
            }));
        }
        let access = self.find_client_for_request(client_id).await?.map(Arc::new);
        self.remembered_clients.put(client_id, access.clone());
        Ok(access.map(|access| IssuingClient {
            access,
            remembered: false,
        }))
    }
}
