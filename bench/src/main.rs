//! Benchmark runner.

fn main() {}
