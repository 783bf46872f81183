//! The generator's output must be byte-for-byte what `cargo generate
//! --vcs none` produces from the same template with the same answers.
//!
//! Needs the cargo-generate CLI (`shared/tools/install-cargo-generate.sh`
//! builds it). Outside CI the test skips without it; under CI (`CI` set) a
//! missing CLI fails the test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn cargo_generate() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("CARGO_HOME").map(|home| PathBuf::from(home).join("bin/cargo-generate")),
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo/bin/cargo-generate")),
    ];
    let on_path = Command::new("cargo-generate")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if on_path {
        return Some(PathBuf::from("cargo-generate"));
    }
    candidates.into_iter().flatten().find(|path| path.is_file())
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// Every file under `root`, by relative path.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, into: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).expect("readable directory") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(root, &path, into);
            } else {
                let relative = path
                    .strip_prefix(root)
                    .expect("under root")
                    .to_string_lossy()
                    .into_owned();
                into.insert(relative, std::fs::read(&path).expect("readable file"));
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(root, root, &mut files);
    files
}

#[test]
fn generator_output_is_identical_to_cargo_generate() {
    let Some(cli) = cargo_generate() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "cargo-generate is required under CI: run shared/tools/install-cargo-generate.sh"
        );
        eprintln!("skipping: cargo-generate is not installed");
        return;
    };
    let repo = repository();
    let lib_path = repo.display().to_string();
    let variants: [(&str, &[&str], BTreeMap<&str, String>); 3] = [
        (
            "sqlite-path",
            &["--lib-path", &lib_path],
            BTreeMap::from([
                ("database", "sqlite".into()),
                ("grip", "false".into()),
                ("lib_path", lib_path.clone()),
            ]),
        ),
        (
            "postgres-grip",
            &["--database", "postgres", "--grip", "--lib-path", &lib_path],
            BTreeMap::from([
                ("database", "postgres".into()),
                ("grip", "true".into()),
                ("lib_path", lib_path.clone()),
            ]),
        ),
        (
            "crates-io",
            &["--lib-version", "0.1.0"],
            BTreeMap::from([("lib_version", "0.1.0".into()), ("lib_path", String::new())]),
        ),
    ];
    for (label, flags, defines) in variants {
        let work = tempfile::tempdir().expect("temporary directory");
        let ours = work.path().join("ours");
        let status = Command::new(env!("CARGO_BIN_EXE_eventstream-rocket"))
            .args(["new", "parity-app", "--destination"])
            .arg(&ours)
            .args(flags)
            .status()
            .expect("the generator runs");
        assert!(status.success(), "{label}: the generator failed");

        let theirs = work.path().join("theirs");
        std::fs::create_dir(&theirs).expect("cargo-generate's destination must exist");
        let mut command = Command::new(&cli);
        if cli.file_name().is_some_and(|name| name == "cargo-generate") {
            command.arg("generate");
        }
        command
            .args(["--path"])
            .arg(repo.join("template"))
            .args([
                "--name",
                "parity-app",
                "--silent",
                "--vcs",
                "none",
                "--destination",
            ])
            .arg(&theirs)
            // cargo-generate fills `authors` and needs a name for it.
            .env("CARGO_NAME", "parity");
        for (name, value) in &defines {
            command.arg("--define").arg(format!("{name}={value}"));
        }
        let output = command.output().expect("cargo-generate runs");
        assert!(
            output.status.success(),
            "{label}: cargo-generate failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );

        let expected = tree(&theirs.join("parity-app"));
        let actual = tree(&ours);
        assert_eq!(
            actual.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "{label}: the same files"
        );
        for (path, bytes) in &expected {
            assert!(
                actual[path] == *bytes,
                "{label}: {path} differs\n--- cargo-generate ---\n{}\n--- generator ---\n{}",
                String::from_utf8_lossy(bytes),
                String::from_utf8_lossy(&actual[path])
            );
        }
    }
}
