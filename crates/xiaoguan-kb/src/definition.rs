//! Knowledge-base definitions (`knowledge-bases/<id>/kb.toml`): what a vertical knowledge base
//! is, which documents it is built from and how they are read and chunked.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use xiaoguan_text::ChunkConfig;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KbDefinition {
    pub id: String,
    pub title: String,
    pub domain: String,
    /// Used for routing questions to this knowledge base.
    pub description: String,
    #[serde(default = "default_embedder")]
    pub embedder: String,
    #[serde(default)]
    pub chunking: ChunkConfig,
    #[serde(default)]
    pub metadata: MetadataDefaults,
    pub sources: Vec<SourceSpec>,
    /// What reading one file may cost (`[limits]`, every field optional; see
    /// [`ReaderLimits`](crate::limits::ReaderLimits) for the defaults).
    #[serde(default)]
    pub limits: crate::limits::ReaderLimits,
    /// The folder holding kb.toml (set when loaded).
    #[serde(skip)]
    pub dir: PathBuf,
}

fn default_embedder() -> String {
    "e5-small".into()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataDefaults {
    pub region: Option<String>,
    pub issuer: Option<String>,
    #[serde(default = "default_language")]
    pub language: String,
}

fn default_language() -> String {
    "zh".into()
}

/// Where a source's globs are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Base {
    /// The configurable data root (`../shared/data` by default).
    #[default]
    Data,
    /// The knowledge base's own folder (documents written by the project).
    Kb,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// By extension: .md → law markdown when it has `<!-- INFO END -->`, else markdown; .txt, .html,
    /// .pdf, .docx, .json, .jsonl, .csv, .xlsx.
    #[default]
    Auto,
    LawMarkdown,
    Text,
    Html,
    Pdf,
    Docx,
    /// JSON array (or JSONL) of records, mapped by `records`.
    Records,
    /// A table (csv or xlsx): one chunk per row, header names kept with each value.
    Table,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    #[serde(default)]
    pub base: Base,
    /// Glob patterns (relative to the base) of the files to read.
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Keep only documents whose title contains one of these (empty = all).
    #[serde(default)]
    pub title_any: Vec<String>,
    /// Drop documents whose title contains one of these.
    #[serde(default)]
    pub title_none: Vec<String>,
    #[serde(default)]
    pub format: Format,
    /// "law", "policy", "faq", "approval-item", "guide", "bundle", …
    pub doc_type: String,
    pub region: Option<String>,
    pub issuer: Option<String>,
    pub records: Option<RecordMapping>,
}

/// How a record (JSON object or table row) becomes a document.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordMapping {
    /// Field holding a stable record id (default: the row number).
    pub id: Option<String>,
    /// Field holding the title; `{field}` placeholders are filled from the record.
    pub title: String,
    /// Fields making up the text, each written as "label：value" (arrays numbered).
    pub text: Vec<TextField>,
    /// The text is a whole document to split by its own structure (default: one block).
    #[serde(default)]
    pub structured: bool,
    pub doc_no: Option<String>,
    pub issuer: Option<String>,
    pub date: Option<String>,
    pub url: Option<String>,
    /// Extra payload fields copied from the record (e.g. the department of a Q&A pair).
    #[serde(default)]
    pub keep: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextField {
    pub field: String,
    /// Written before the value; empty = the value alone.
    #[serde(default)]
    pub label: String,
    /// For an array of objects: how each element is written, `{field}` filled from the element
    /// and `{field|text}` giving the text used when the field is empty or null (elements numbered).
    #[serde(default)]
    pub each: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("unknown knowledge base '{id}' (known: {known})")]
    Unknown { id: String, known: String },
}

impl KbDefinition {
    pub fn load(path: &Path) -> Result<Self, DefinitionError> {
        let bad = |message: String| DefinitionError::Invalid { path: path.display().to_string(), message };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let mut def: KbDefinition = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        def.dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if def.id.is_empty() || !def.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(bad(format!("id '{}' must be ASCII letters, digits, '-' or '_'", def.id)));
        }
        if def.sources.is_empty() {
            return Err(bad("no [[sources]]".into()));
        }
        for (i, s) in def.sources.iter().enumerate() {
            if s.include.is_empty() {
                return Err(bad(format!("sources[{i}] has no include patterns")));
            }
            if matches!(s.format, Format::Records) && s.records.is_none() {
                return Err(bad(format!("sources[{i}]: format = \"records\" needs a [sources.records] mapping")));
            }
        }
        def.limits.validate().map_err(bad)?;
        let c = &def.chunking;
        if c.max_chars < 50 || c.overlap_chars >= c.max_chars || c.min_chars >= c.max_chars {
            return Err(bad(format!("chunking {c:?}: need max_chars ≥ 50 and overlap/min below max")));
        }
        Ok(def)
    }
}

/// Every `*/kb.toml` under `dir`, sorted by id.
pub fn load_all(dir: &Path) -> Result<Vec<KbDefinition>, DefinitionError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DefinitionError::Invalid {
        path: dir.display().to_string(),
        message: format!("cannot list knowledge-base definitions: {e} (set --kb-dir / XIAOGUAN_KB_DIR)"),
    })?;
    let mut defs = Vec::new();
    for e in entries.flatten() {
        let p = e.path().join("kb.toml");
        if p.exists() {
            defs.push(KbDefinition::load(&p)?);
        }
    }
    defs.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(defs)
}

pub fn find<'a>(defs: &'a [KbDefinition], id: &str) -> Result<&'a KbDefinition, DefinitionError> {
    defs.iter().find(|d| d.id == id).ok_or_else(|| DefinitionError::Unknown {
        id: id.to_string(),
        known: defs.iter().map(|d| d.id.as_str()).collect::<Vec<_>>().join(", "),
    })
}
