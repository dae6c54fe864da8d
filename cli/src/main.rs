//! `meetings`: the operator CLI.

fn main() {}
