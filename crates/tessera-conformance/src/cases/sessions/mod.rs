//! [`SessionStore`](tessera_core::SessionStore): the contract, method by
//! method, straight against the store. Session writes append their events,
//! so these cases read them back through
//! [`EventStore`](tessera_core::EventStore).
//!
//! Records are built by hand here (not through `Sessions`) so every field
//! can be set to a value a careless encoding would lose.

mod bulk;
mod create;
mod update;

pub use bulk::*;
pub use create::*;
pub use update::*;
