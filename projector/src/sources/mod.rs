//! Where a projector's events come from: the NATS stream ([`nats`]) or, without NATS, the
//! event store itself ([`store`]; [`sqlite`] in embedded mode). All apply through the same
//! run loop.

pub mod nats;
pub mod sqlite;
pub mod store;
