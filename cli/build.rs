//! Rebuilds the binary when the embedded browser client (`web/app`) changes: `include_dir!`
//! reads the files at compile time, and Cargo does not know about them otherwise.

fn main() {
    println!("cargo:rerun-if-changed=../web/app");
}
