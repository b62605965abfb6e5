//! `classifiers.toml`: the classifier heads the product trains, each from a dataset under the data
//! root, so every artifact is reproducible from the data with one command.

use crate::error::{AssistError, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierSpec {
    pub name: String,
    pub description: String,
    /// JSONL/JSON path relative to the data root.
    pub data: PathBuf,
    pub text: Vec<String>,
    pub label: String,
    #[serde(default)]
    pub id: Option<String>,
    /// Map label spellings to canonical names with the dispatch rules' department aliases.
    #[serde(default)]
    pub department_aliases: bool,
    /// The ticket store's review field this head learns from (request_type | domain | category |
    /// unit): `classify train` adds the reviewed tickets' labels as training rows.
    #[serde(default)]
    pub review_field: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    classifier: Vec<ClassifierSpec>,
}

pub fn load_specs(path: &Path) -> Result<Vec<ClassifierSpec>> {
    let text = std::fs::read_to_string(path).map_err(|e| AssistError::io("read", path, e))?;
    let file: SpecFile = toml::from_str(&text).map_err(|e| AssistError::InvalidInput(format!("{}: {}", path.display(), toml_error(&text, &e))))?;
    let mut seen = std::collections::HashSet::new();
    for s in &file.classifier {
        if !seen.insert(s.name.clone()) {
            return Err(AssistError::InvalidInput(format!("{}: classifier '{}' is defined twice", path.display(), s.name)));
        }
    }
    Ok(file.classifier)
}

/// A TOML error as "line N: message".
pub fn toml_error(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => format!("line {}: {}", text[..span.start.min(text.len())].lines().count().max(1), e.message()),
        None => e.message().to_string(),
    }
}
