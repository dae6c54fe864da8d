//! `audit`: what auditors, support staff and operators read out of the event log — an
//! aggregate's timeline ([`history`]), its state at any point ([`state`]), the log in global
//! order ([`export`]), and proof that nobody edited it ([`verify`], over the per-aggregate
//! hash chain and the global [`anchor`]s the command side writes).
//!
//! `meetings events …` (the CLI) and `GET /v1/admin/history/…` (the query API) are thin
//! shells around this crate. Rebuilding read models (`meetings events replay`) belongs to
//! the projector crate.

pub mod anchor;
pub mod copy;
pub mod export;
#[cfg(feature = "generate")]
pub mod generate;
pub mod history;
pub mod kind;
pub mod point;
pub mod state;
pub mod verify;

pub use kind::Kind;
pub use point::Point;
