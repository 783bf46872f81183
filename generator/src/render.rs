//! Rendering: the embedded template, its placeholders filled with Liquid
//! (the engine cargo-generate uses), written to a new directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use heck::{ToKebabCase, ToSnakeCase};
use include_dir::{Dir, DirEntry};
use liquid::model::Value;

use crate::template::TemplateConfig;

/// The template, embedded at compile time.
pub(crate) static TEMPLATE: Dir<'static> =
    include_dir::include_dir!("$CARGO_MANIFEST_DIR/../template");

const CONFIG_FILE: &str = "cargo-generate.toml";

/// What the user chose: the project name and placeholder values.
#[derive(Debug, Clone)]
pub(crate) struct Answers {
    /// As given; cargo-generate kebab-cases it for `project-name`.
    pub(crate) name: String,
    /// `--define name=value` pairs.
    pub(crate) defines: BTreeMap<String, String>,
}

/// Renders `template` for `answers` into `destination`, which must not
/// exist or be empty. Returns the files written, relative to it.
pub(crate) fn render(
    template: &Dir<'_>,
    answers: &Answers,
    destination: &Path,
) -> Result<Vec<PathBuf>, String> {
    let config_text = template
        .get_file(CONFIG_FILE)
        .and_then(|file| file.contents_utf8())
        .ok_or("the template has no cargo-generate.toml")?;
    let config = TemplateConfig::parse(config_text)?;
    let (globals, values) = globals(&config, answers)?;
    let parser = liquid::ParserBuilder::with_stdlib()
        .build()
        .map_err(|e| format!("liquid: {e}"))?;
    let render_text = |text: &str, what: &str| -> Result<String, String> {
        parser
            .parse(text)
            .and_then(|template| template.render(&globals))
            .map_err(|e| format!("{what}: {e}"))
    };

    let mut files = Vec::new();
    collect(template, &mut files);
    let mut written = Vec::new();
    for file in files {
        let path = file.path().to_string_lossy().replace('\\', "/");
        if path == CONFIG_FILE || config.is_ignored(&path, &values) {
            continue;
        }
        let target = path.strip_suffix(".liquid").unwrap_or(&path);
        let target = if target.contains("{{") {
            render_text(target, &path)?
        } else {
            target.to_owned()
        };
        let contents = match file.contents_utf8() {
            Some(text) if !config.is_excluded(&path) => render_text(text, &path)?.into_bytes(),
            _ => file.contents().to_vec(),
        };
        let output = destination.join(&target);
        if let Some(parent) = output.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        std::fs::write(&output, contents)
            .map_err(|e| format!("writing {}: {e}", output.display()))?;
        written.push(PathBuf::from(target));
    }
    written.sort();
    Ok(written)
}

fn collect<'a>(dir: &'a Dir<'a>, into: &mut Vec<&'a include_dir::File<'a>>) {
    for entry in dir.entries() {
        match entry {
            DirEntry::Dir(sub) => collect(sub, into),
            DirEntry::File(file) => into.push(file),
        }
    }
}

/// The Liquid globals cargo-generate would set, and the placeholder values
/// as strings (for conditions).
fn globals(
    config: &TemplateConfig,
    answers: &Answers,
) -> Result<(liquid::Object, BTreeMap<String, String>), String> {
    let project_name = answers.name.to_kebab_case();
    let crate_name = project_name.to_snake_case();
    let mut globals = liquid::Object::new();
    globals.insert("project-name".into(), Value::scalar(project_name));
    globals.insert("crate_name".into(), Value::scalar(crate_name));
    globals.insert("crate_type".into(), Value::scalar("bin"));
    let mut values = BTreeMap::new();
    for name in answers.defines.keys() {
        if !config.placeholders.contains_key(name) {
            let known: Vec<&str> = config.placeholders.keys().map(String::as_str).collect();
            return Err(format!(
                "unknown placeholder {name:?}; the template has: {}",
                known.join(", ")
            ));
        }
    }
    for (name, placeholder) in &config.placeholders {
        let default = placeholder.default.as_ref().map(|value| match value {
            toml::Value::String(text) => text.clone(),
            other => other.to_string(),
        });
        let value = answers
            .defines
            .get(name)
            .cloned()
            .or(default)
            .ok_or_else(|| {
                format!("placeholder {name:?} has no default; give it with --define {name}=...")
            })?;
        if let Some(choices) = &placeholder.choices
            && !choices.contains(&value)
        {
            return Err(format!(
                "{name} must be one of {}, not {value:?}",
                choices.join(", ")
            ));
        }
        let liquid_value = match placeholder.kind.as_str() {
            "bool" => match value.as_str() {
                "true" => Value::scalar(true),
                "false" => Value::scalar(false),
                _ => return Err(format!("{name} must be true or false, not {value:?}")),
            },
            "string" => Value::scalar(value.clone()),
            other => {
                return Err(format!(
                    "placeholder {name:?} has unsupported type {other:?}"
                ));
            }
        };
        globals.insert(name.clone().into(), liquid_value);
        values.insert(name.clone(), value);
    }
    Ok((globals, values))
}
