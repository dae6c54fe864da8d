//! The read models in PostgreSQL: loading what a batch touches ([`load`]), writing what it
//! changed ([`write`]), and rendering documents of stored rows ([`documents`]).
//!
//! A batch costs two round trips whatever its size: one statement loads, one writes. Applying
//! event by event cost four to six per event, which bounded the projector at ~800 events/s.

pub mod documents;
pub mod load;
mod statement;

pub(crate) use statement::json_map;
pub mod write;

pub use load::{load, meetings_of, Sequences};
pub use write::{write, Batch, Bookkeeping};
