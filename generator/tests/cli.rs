//! The generator's command line, as a user runs it.

use std::process::Command;

fn generator() -> Command {
    Command::new(env!("CARGO_BIN_EXE_eventstream-rocket"))
}

#[test]
fn creates_the_project_and_says_what_to_run_next() {
    let work = tempfile::tempdir().expect("temporary directory");
    let destination = work.path().join("chat");
    let output = generator()
        .args(["new", "My_Chat", "--database", "postgres", "--destination"])
        .arg(&destination)
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("Created my-chat"), "{stdout}");
    assert!(stdout.contains("cargo run"), "{stdout}");
    let manifest = std::fs::read_to_string(destination.join("Cargo.toml")).expect("Cargo.toml");
    assert!(manifest.contains("name = \"my-chat\""), "{manifest}");
    assert!(manifest.contains("sqlx_postgres"), "{manifest}");
    let rocket_toml =
        std::fs::read_to_string(destination.join("Rocket.toml")).expect("Rocket.toml");
    assert!(
        rocket_toml.contains("EVENTSTREAM_AUTHORIZER = \"my_chat::events::PrivateChannels\""),
        "{rocket_toml}"
    );
    assert!(destination.join("migrations/postgres").is_dir());
    assert!(
        !destination.join("migrations/sqlite").exists(),
        "the other backend's migrations are left out"
    );
    assert!(!destination.join("cargo-generate.toml").exists());
    // Tera and JavaScript are copied verbatim, braces and all.
    let page =
        std::fs::read_to_string(destination.join("templates/index.html.tera")).expect("page");
    assert!(page.contains("{% for room in rooms %}"));
}

#[test]
fn refuses_to_overwrite_a_non_empty_directory() {
    let work = tempfile::tempdir().expect("temporary directory");
    std::fs::write(work.path().join("precious.txt"), "keep me").expect("write");
    let output = generator()
        .args(["new", "app", "--destination"])
        .arg(work.path())
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not empty"));
    assert_eq!(
        std::fs::read_to_string(work.path().join("precious.txt")).expect("kept"),
        "keep me"
    );
    assert_eq!(
        std::fs::read_dir(work.path()).expect("dir").count(),
        1,
        "nothing was added"
    );
}

#[test]
fn bad_flags_get_a_clear_error_and_help_is_available() {
    let output = generator()
        .args(["new", "app", "--database", "mysql"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("sqlite or postgres"));
    let help = generator().arg("--help").output().expect("runs");
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("usage: eventstream-rocket new"));
}
