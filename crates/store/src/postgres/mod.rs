//! Machinery only PostgreSQL has: group commit of token writes (`batch`, with the statements of
//! the grant writes in `grant_writes`) and the settlement of code and refresh-token spends left
//! in doubt by a broken connection (`settlement`). SQLite writes one at a time and cannot lose a
//! commit's outcome, so its paths go around all three.

pub(crate) mod batch;
pub(crate) mod grant_writes;
pub(crate) mod settlement;
