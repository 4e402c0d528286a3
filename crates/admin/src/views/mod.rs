//! The JSON shapes of the admin API: requests the handlers decode and responses they send. The
//! OpenAPI document is generated from these same types.

mod audit;
mod clients;
mod keys;
mod me;
mod roles;
mod sessions;
mod tenants;
mod users;

pub use audit::*;
pub use clients::*;
pub use keys::*;
pub use me::*;
pub use roles::*;
pub use sessions::*;
pub use tenants::*;
pub use users::*;
