//! Rebuild when a migration is added: they are embedded with `include_str!`,
//! which notices edits to existing files but not new ones.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
