//! The template's own configuration, `cargo-generate.toml`: placeholders
//! with their defaults, what is copied verbatim, and what is left out under
//! which condition. Only the subset the template uses is supported, and
//! anything else is refused, so the generator can never silently diverge
//! from cargo-generate.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A placeholder's declared type and default.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Placeholder {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) default: Option<toml::Value>,
    #[serde(default)]
    pub(crate) choices: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct TemplateSection {
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    ignore: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Conditional {
    #[serde(default)]
    ignore: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct RawConfig {
    template: TemplateSection,
    #[serde(default)]
    placeholders: BTreeMap<String, Placeholder>,
    #[serde(default)]
    conditional: BTreeMap<String, Conditional>,
}

/// `cargo-generate.toml`, parsed.
#[derive(Debug)]
pub(crate) struct TemplateConfig {
    pub(crate) placeholders: BTreeMap<String, Placeholder>,
    exclude: Vec<String>,
    ignore: Vec<String>,
    /// (variable, expected value, paths ignored when it matches)
    conditionals: Vec<(String, String, Vec<String>)>,
}

impl TemplateConfig {
    pub(crate) fn parse(text: &str) -> Result<TemplateConfig, String> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| format!("cargo-generate.toml: {e}"))?;
        let mut conditionals = Vec::new();
        for (expression, conditional) in raw.conditional {
            // Only `name == "value"` is supported.
            let (name, value) = expression
                .split_once("==")
                .map(|(name, value)| (name.trim(), value.trim()))
                .filter(|(name, value)| {
                    !name.is_empty()
                        && value.len() >= 2
                        && value.starts_with('"')
                        && value.ends_with('"')
                })
                .ok_or_else(|| {
                    format!("cargo-generate.toml: unsupported condition {expression:?}")
                })?;
            conditionals.push((
                name.to_owned(),
                value[1..value.len() - 1].to_owned(),
                conditional.ignore,
            ));
        }
        Ok(TemplateConfig {
            placeholders: raw.placeholders,
            exclude: raw.template.exclude,
            ignore: raw.template.ignore,
            conditionals,
        })
    }

    /// Whether `path` (relative, `/`-separated) is copied without rendering.
    pub(crate) fn is_excluded(&self, path: &str) -> bool {
        self.exclude.iter().any(|pattern| matches(pattern, path))
    }

    /// Whether `path` is left out, given the placeholder values.
    pub(crate) fn is_ignored(&self, path: &str, values: &BTreeMap<String, String>) -> bool {
        let conditional = self
            .conditionals
            .iter()
            .filter(|(name, expected, _)| values.get(name) == Some(expected))
            .flat_map(|(_, _, ignore)| ignore);
        self.ignore
            .iter()
            .chain(conditional)
            .any(|pattern| matches(pattern, path))
    }
}

/// `dir/*`, `dir/**` and `dir` match everything under `dir`; other patterns
/// match one path exactly.
fn matches(pattern: &str, path: &str) -> bool {
    let dir = pattern
        .trim_end_matches("/**")
        .trim_end_matches("/*")
        .trim_end_matches('/');
    path == dir
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_directories_and_files() {
        assert!(matches("templates/*", "templates/index.html.tera"));
        assert!(matches("static/**", "static/js/a.js"));
        assert!(matches("migrations/sqlite", "migrations/sqlite/1.sql"));
        assert!(!matches("migrations/sqlite", "migrations/sqlite2/1.sql"));
        assert!(matches("README.md", "README.md"));
        assert!(!matches("README.md", "src/README.md"));
    }

    #[test]
    fn conditions_other_than_equality_are_refused() {
        let text = "[template]\n[conditional.'database != \"x\"']\nignore = []\n";
        assert!(TemplateConfig::parse(text).is_err());
    }
}
