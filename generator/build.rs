//! The template is embedded with `include_dir!`, which notices edits to
//! existing files but not added or removed ones: rebuild on any change.
fn main() {
    println!("cargo:rerun-if-changed=../template");
}
