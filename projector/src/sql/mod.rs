//! The read models in PostgreSQL: loading what a batch touches ([`load`]), writing what it
//! changed ([`write`]), rendering documents of stored rows ([`documents`]), and appending rows
//! in bulk ([`copy`]).
//!
//! A batch costs two round trips whatever its size: one statement loads, one writes. Applying
//! event by event cost four to six per event, which bounded the projector at ~800 events/s.

pub mod copy;
pub mod documents;
pub mod load;
mod statement;

pub(crate) use statement::json_map;
pub mod write;

pub use load::{load, meetings_of, Sequences};
pub use write::{write, Batch, Bookkeeping};
