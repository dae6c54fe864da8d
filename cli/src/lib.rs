//! The `meetings` binary's library: `meetings serve` composed from the services' parts, here so
//! that the end-to-end tests and the benchmarks start exactly what the binary runs.

pub mod copy;
pub mod embedded;
pub mod serve;
pub mod web;
