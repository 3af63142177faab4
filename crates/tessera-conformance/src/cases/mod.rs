//! The cases. Each is a `pub async fn(Arc<dyn SessionStore>)` that panics
//! on a violation; [`conformance_suite!`](crate::conformance_suite) runs each
//! as its own test on a fresh store.

mod concurrency;
mod domain;
mod refresh;
mod store;
mod tokens;

pub use concurrency::*;
pub use domain::*;
pub use refresh::*;
pub use store::*;
pub use tokens::*;
