//! `eventstream-rocket`: scaffolds a Rocket application that uses
//! eventstream-rocket, from the same template `cargo generate` uses, with no
//! cargo-generate installed and no network.
//!
//! ```text
//! eventstream-rocket new my-app [--database sqlite|postgres] [--grip]
//!                               [--lib-path PATH | --lib-version VERSION]
//!                               [--destination DIR]
//! ```
//!
//! Run from a checkout (`cargo run -p eventstream-rocket-generator -- new my-app`),
//! the application depends on that checkout unless told otherwise.

mod render;
mod template;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use heck::ToKebabCase;

const USAGE: &str = "\
usage: eventstream-rocket new <name> [options]

Creates a Rocket application with live server-sent events in ./<name>.

options:
  --database sqlite|postgres   where events and messages are stored (default: sqlite)
  --grip                       enable the GRIP section (Pushpin / Fastly Fanout)
  --lib-path PATH              depend on an eventstream-rocket checkout at PATH
  --lib-version VERSION        depend on eventstream-rocket VERSION from crates.io
  --destination DIR            create the project in DIR instead of ./<name>
  -h, --help                   show this help";

/// The checkout this binary was built from, if it is still there.
fn checkout() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).ok()?;
    manifest
        .contains("name = \"eventstream-rocket\"")
        .then(|| root.canonicalize().ok())
        .flatten()
}

/// A request to create a project.
#[derive(Debug)]
struct New {
    name: String,
    destination: Option<PathBuf>,
    defines: BTreeMap<String, String>,
}

fn parse(args: &[String]) -> Result<New, String> {
    let mut args = args.iter();
    match args.next().map(String::as_str) {
        Some("new") => {}
        Some("-h" | "--help") | None => return Err(USAGE.into()),
        Some(other) => return Err(format!("unknown command {other:?}\n\n{USAGE}")),
    }
    let mut name = None;
    let mut destination = None;
    let mut defines = BTreeMap::new();
    let mut lib_given = false;
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Err(USAGE.into()),
            "--database" => {
                let database = value(arg)?;
                if database != "sqlite" && database != "postgres" {
                    return Err(format!(
                        "--database must be sqlite or postgres, not {database:?}"
                    ));
                }
                defines.insert("database".into(), database);
            }
            "--grip" => {
                defines.insert("grip".into(), "true".into());
            }
            "--lib-path" | "--lib-version" if lib_given => {
                return Err("give either --lib-path or --lib-version, not both".into());
            }
            "--lib-path" => {
                let path = PathBuf::from(value(arg)?);
                let path = path
                    .canonicalize()
                    .map_err(|e| format!("--lib-path {}: {e}", path.display()))?;
                if !path.join("Cargo.toml").is_file() {
                    return Err(format!(
                        "--lib-path {}: no Cargo.toml there",
                        path.display()
                    ));
                }
                defines.insert("lib_path".into(), path.display().to_string());
                lib_given = true;
            }
            "--lib-version" => {
                let version = value(arg)?;
                if version.is_empty()
                    || !version
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || ".-+^~=<>* ,".contains(c))
                {
                    return Err(format!(
                        "--lib-version {version:?} is not a version requirement"
                    ));
                }
                defines.insert("lib_version".into(), version);
                defines.insert("lib_path".into(), String::new());
                lib_given = true;
            }
            "--destination" => destination = Some(PathBuf::from(value(arg)?)),
            flag if flag.starts_with('-') => {
                return Err(format!("unknown option {flag:?}\n\n{USAGE}"));
            }
            positional if name.is_none() => name = Some(positional.to_owned()),
            extra => return Err(format!("unexpected argument {extra:?}\n\n{USAGE}")),
        }
    }
    let name = name.ok_or_else(|| format!("missing the project name\n\n{USAGE}"))?;
    validate_name(&name)?;
    if !lib_given && let Some(checkout) = checkout() {
        defines.insert("lib_path".into(), checkout.display().to_string());
    }
    Ok(New {
        name,
        destination,
        defines,
    })
}

/// Names cargo would refuse for a package (as kebab-cased by cargo-generate).
fn validate_name(name: &str) -> Result<(), String> {
    const RESERVED: &[&str] = &[
        "test",
        "std",
        "core",
        "alloc",
        "proc-macro",
        "self",
        "super",
        "crate",
        "build",
        "deps",
        "examples",
        "async",
        "await",
        "fn",
        "mod",
        "use",
        "struct",
        "enum",
        "impl",
        "trait",
        "type",
        "let",
        "match",
        "loop",
        "while",
        "for",
        "if",
        "else",
        "return",
        "static",
        "const",
        "pub",
        "ref",
        "mut",
        "move",
        "unsafe",
        "where",
        "dyn",
        "true",
        "false",
        "in",
        "as",
        "break",
        "continue",
        "extern",
        "abstract",
        "become",
        "box",
        "do",
        "final",
        "macro",
        "override",
        "priv",
        "typeof",
        "unsized",
        "virtual",
        "yield",
        "try",
        "gen",
    ];
    let kebab = name.to_kebab_case();
    let valid = kebab.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && kebab
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && kebab.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(format!(
            "{name:?} is not a valid crate name: use letters, digits, '-' and '_', starting with a letter"
        ));
    }
    if RESERVED.contains(&kebab.as_str()) {
        return Err(format!(
            "{name:?} is reserved in Rust or cargo; pick another name"
        ));
    }
    Ok(())
}

fn run(new: New) -> Result<(), String> {
    let project = new.name.to_kebab_case();
    let destination = new.destination.unwrap_or_else(|| PathBuf::from(&project));
    if destination.exists() {
        let mut entries = std::fs::read_dir(&destination)
            .map_err(|e| format!("{}: {e}", destination.display()))?;
        if entries.next().is_some() {
            return Err(format!(
                "{} exists and is not empty; refusing to overwrite it",
                destination.display()
            ));
        }
    }
    let answers = render::Answers {
        name: new.name,
        defines: new.defines,
    };
    let files = render::render(&render::TEMPLATE, &answers, &destination)?;
    println!("Created {project} in {}:", destination.display());
    for file in &files {
        println!("  {}", file.display());
    }
    println!(
        "\nNext:\n  cd {} && cargo run\n  open http://127.0.0.1:8000",
        destination.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args).and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) if message == USAGE => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn flags_become_placeholder_values() {
        let new = parse(&args(
            "new my-app --database postgres --grip --lib-version 0.2",
        ))
        .expect("valid");
        assert_eq!(new.name, "my-app");
        assert_eq!(new.defines["database"], "postgres");
        assert_eq!(new.defines["grip"], "true");
        assert_eq!(new.defines["lib_version"], "0.2");
        assert_eq!(new.defines["lib_path"], "");
    }

    #[test]
    fn bad_input_gets_a_clear_error() {
        for (input, expected) in [
            ("new", "missing the project name"),
            ("new 1app", "not a valid crate name"),
            ("new my app", "unexpected argument"),
            ("new a/b", "not a valid crate name"),
            ("new test", "reserved"),
            ("new app --database mysql", "sqlite or postgres"),
            ("new app --frobnicate", "unknown option"),
            ("new app --database", "needs a value"),
            ("new app --lib-version 1 --lib-path .", "not both"),
            ("new app --lib-path /nonexistent/x", "--lib-path"),
            ("make app", "unknown command"),
        ] {
            let error = parse(&args(input)).expect_err(input);
            assert!(error.contains(expected), "{input}: {error}");
        }
    }

    #[test]
    fn from_a_checkout_the_library_defaults_to_it() {
        let new = parse(&args("new my-app")).expect("valid");
        let checkout = checkout().expect("tests run in a checkout");
        assert_eq!(new.defines["lib_path"], checkout.display().to_string());
    }
}
