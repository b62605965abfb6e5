//! Suites (`evals/<suite>.yaml`): dataset(s), field mapping, task, system under test, metrics
//! thresholds. Any JSONL with the same fields runs under the same suite.

use crate::EvalError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    Retrieval,
    Classification,
    Routing,
    Qa,
    Refusal,
    Ticket,
    /// 弱信号: the expected field lists signal kinds (empty = none); precision and recall per kind.
    Signals,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Rows the shipped classifiers held out in training (stable id hash).
    Holdout,
    Train,
    #[default]
    All,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    /// JSONL or JSON-array path, relative to the data root (absolute paths too), or to the
    /// repository with `base: repo` (a labelled set the project wrote).
    pub path: PathBuf,
    #[serde(default)]
    pub base: DatasetBase,
    #[serde(default)]
    pub split: Split,
    /// Keep rows whose `field` is one of `any_of` (and none of `none_of`).
    #[serde(default)]
    pub filter: Option<RowFilter>,
    /// A constant expected value for every row (e.g. "handoff" for out-of-scope questions).
    #[serde(default)]
    pub expected: Option<String>,
    #[serde(default)]
    pub limit: Option<usize>,
    /// Rephrase each input deterministically (tests that matching survives wording changes).
    #[serde(default)]
    pub perturb: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetBase {
    #[default]
    Data,
    Repo,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowFilter {
    pub field: String,
    #[serde(default)]
    pub any_of: Vec<String>,
    #[serde(default)]
    pub none_of: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fields {
    #[serde(default)]
    pub id: Option<String>,
    /// Joined with "。" when several.
    pub input: Vec<String>,
    #[serde(default)]
    pub expected: Option<String>,
    /// Strip this from the start of the expected value (LawBench answers begin with "答案:").
    #[serde(default)]
    pub strip_prefix: Option<String>,
    /// For qa / retrieval: the document the answer must cite; `{field}` placeholders.
    #[serde(default)]
    pub expected_doc: Option<String>,
    /// Map expected values to labels (e.g. department → knowledge base); unmapped rows are skipped.
    #[serde(default)]
    pub label_map: Option<BTreeMap<String, String>>,
    /// For ticket suites: a JSON pointer into the ticket result (`/request_type/ranked/0/label`,
    /// `/departments/0/department`) compared with `expected` instead of the suggested reply, to
    /// measure the precision of the tickets that pass without review.
    #[serde(default)]
    pub expected_output: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SystemKind {
    /// The in-process pipeline with a settings file.
    #[default]
    Pipeline,
    /// An OpenAI-compatible chat endpoint (this service or another vendor's).
    Openai,
    /// This service's native API.
    Native,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct System {
    #[serde(default)]
    pub kind: SystemKind,
    /// Base URL for HTTP systems, e.g. http://127.0.0.1:8080.
    #[serde(default)]
    pub url: Option<String>,
    /// Model name for OpenAI-compatible systems.
    #[serde(default)]
    pub model: Option<String>,
    /// Environment variable holding the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// A handoff is recognised in another vendor's text by this substring.
    #[serde(default)]
    pub handoff_phrase: Option<String>,
    /// Knowledge bases (retrieval: the one searched; qa/refusal: the answer scope).
    #[serde(default)]
    pub kbs: Vec<String>,
    /// Classifier name (classification / routing).
    #[serde(default)]
    pub classifier: Option<String>,
    /// Routing with the dispatch rules on top of the classifier.
    #[serde(default)]
    pub dispatch: bool,
    /// qa / refusal: auto | extractive | generate.
    #[serde(default)]
    pub mode: Option<String>,
    /// Leave the item's own document out of retrieval (rows that a KB holds).
    #[serde(default)]
    pub exclude_own_doc: bool,
    /// Retrieval depth.
    #[serde(default)]
    pub k: Option<usize>,
    /// Routing task: rank the knowledge bases with this strategy (`search-all` | `description`)
    /// instead of a classifier.
    #[serde(default)]
    pub router: Option<String>,
    /// qa / refusal: ask with `any_region` (other regions' local texts are not set aside), the
    /// baseline of the jurisdiction metric.
    #[serde(default)]
    pub any_region: bool,
    /// ticket: classify, flag and dispatch only, without a suggested reply (needs no knowledge base).
    #[serde(default)]
    pub without_reply: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub task: Task,
    pub datasets: Vec<Dataset>,
    pub fields: Fields,
    #[serde(default)]
    pub system: System,
    /// Minimum values; the run fails (non-zero exit) when one is not met. `max_` prefix = upper bound.
    #[serde(default)]
    pub thresholds: BTreeMap<String, f64>,
    #[serde(default = "default_seed")]
    pub seed: u64,
}

fn default_seed() -> u64 {
    20261128
}

#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub id: String,
    pub input: String,
    pub expected: Option<String>,
    pub expected_doc: Option<String>,
    pub dataset: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadedDataset {
    pub path: String,
    pub sha256: String,
    pub rows: usize,
    pub items: usize,
}

impl Suite {
    pub fn load(path: &Path) -> Result<(Self, String), EvalError> {
        let bytes = std::fs::read(path).map_err(|e| EvalError::Input(format!("{}: {e}", path.display())))?;
        let sha = hex::encode(Sha256::digest(&bytes));
        let suite: Suite = serde_yaml::from_slice(&bytes).map_err(|e| {
            let at = e.location().map(|l| format!("line {}: ", l.line())).unwrap_or_default();
            EvalError::Input(format!("{}: {at}{e}", path.display()))
        })?;
        if suite.datasets.is_empty() {
            return Err(EvalError::Input(format!("{}: the suite names no dataset", path.display())));
        }
        if suite.fields.input.is_empty() {
            return Err(EvalError::Input(format!("{}: fields.input is empty", path.display())));
        }
        Ok((suite, sha))
    }
}

fn field_string(row: &Map<String, Value>, f: &str) -> Option<String> {
    match row.get(f)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        // A list of labels (弱信号 kinds), comma-joined; an empty list is an empty label set.
        Value::Array(a) => Some(a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")),
        _ => None,
    }
}

/// `{field}` placeholders filled from the row.
fn fill(template: &str, row: &Map<String, Value>) -> String {
    let mut out = template.to_string();
    for (k, _) in row.iter() {
        let key = format!("{{{k}}}");
        if out.contains(&key) {
            out = out.replace(&key, &field_string(row, k).unwrap_or_default());
        }
    }
    out
}

/// Deterministic rewording: polite prefixes, question particles, punctuation.
pub fn perturb(text: &str, n: usize) -> String {
    let t = text.trim().trim_start_matches("问：").trim_end_matches(['？', '?', '。']);
    match n % 4 {
        0 => format!("你好，请问{t}？"),
        1 => format!("{t}？谢谢"),
        2 => format!("想咨询一下，{t}"),
        _ => format!("{t}呢？"),
    }
}

/// Rows of every dataset as items.
pub fn load_items(suite: &Suite, data_root: &Path, repo_dir: &Path, holdout_percent: u64) -> Result<(Vec<Item>, Vec<LoadedDataset>), EvalError> {
    let mut items = Vec::new();
    let mut loaded = Vec::new();
    for (di, d) in suite.datasets.iter().enumerate() {
        let base = match d.base {
            DatasetBase::Data => data_root,
            DatasetBase::Repo => repo_dir,
        };
        let path = if d.path.is_absolute() { d.path.clone() } else { base.join(&d.path) };
        let (rows, sha) = xiaoguan_assist::classify::train::read_rows(&path).map_err(|e| EvalError::Input(e.to_string()))?;
        let total = rows.len();
        let mut kept = 0;
        for (line, v) in rows {
            let Some(row) = v.as_object() else {
                return Err(EvalError::Input(format!("{}:{line}: expected a JSON object", path.display())));
            };
            let id = suite.fields.id.as_deref().and_then(|f| field_string(row, f)).unwrap_or_else(|| format!("{}:{line}", d.path.display()));
            match d.split {
                Split::All => {}
                Split::Holdout if !xiaoguan_assist::classify::train::is_holdout(&id, holdout_percent) => continue,
                Split::Train if xiaoguan_assist::classify::train::is_holdout(&id, holdout_percent) => continue,
                _ => {}
            }
            if let Some(f) = &d.filter {
                let v = field_string(row, &f.field).unwrap_or_default();
                if (!f.any_of.is_empty() && !f.any_of.contains(&v)) || f.none_of.contains(&v) {
                    continue;
                }
            }
            let mut input = suite.fields.input.iter().filter_map(|f| field_string(row, f)).filter(|s| !s.trim().is_empty()).collect::<Vec<_>>().join("。");
            if input.trim().is_empty() {
                continue;
            }
            if d.perturb {
                input = perturb(&input, kept);
            }
            let mut expected = d.expected.clone().or_else(|| suite.fields.expected.as_deref().and_then(|f| field_string(row, f)));
            if let (Some(e), Some(p)) = (&mut expected, &suite.fields.strip_prefix) {
                *e = e.trim().trim_start_matches(p.as_str()).trim().to_string();
            }
            if let Some(map) = &suite.fields.label_map {
                match expected.as_deref().and_then(|e| map.get(e.trim())) {
                    Some(mapped) => expected = Some(mapped.clone()),
                    None => continue,
                }
            }
            if !matches!(suite.task, Task::Qa | Task::Ticket | Task::Signals) && expected.as_deref().is_none_or(|e| e.trim().is_empty()) {
                continue;
            }
            let expected_doc = suite.fields.expected_doc.as_deref().map(|t| fill(t, row));
            items.push(Item { id, input, expected, expected_doc, dataset: di });
            kept += 1;
            if d.limit.is_some_and(|l| kept >= l) {
                break;
            }
        }
        loaded.push(LoadedDataset { path: d.path.display().to_string(), sha256: sha, rows: total, items: kept });
    }
    Ok((items, loaded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_a_suite_and_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("d.jsonl"), "{\"id\":\"a\",\"q\":\"问：甲？\",\"dept\":\"X\"}\n{\"id\":\"b\",\"q\":\"乙\",\"dept\":\"Y\"}\n{\"id\":\"c\",\"q\":\"丙\",\"dept\":\"\"}\n").unwrap();
        let suite_path = dir.path().join("s.yaml");
        std::fs::write(&suite_path, "name: t\ntask: routing\ndatasets:\n  - path: d.jsonl\n    filter: {field: dept, none_of: [Y]}\nfields: {id: id, input: [q], expected: dept, expected_doc: 'doc#{id}'}\nthresholds: {accuracy: 0.5}\n").unwrap();
        let (suite, sha) = Suite::load(&suite_path).unwrap();
        assert_eq!(sha.len(), 64);
        let (items, loaded) = load_items(&suite, dir.path(), dir.path(), 20).unwrap();
        assert_eq!(items.len(), 1, "filtered and empty-label rows are dropped");
        assert_eq!(items[0].expected_doc.as_deref(), Some("doc#a"));
        assert_eq!(loaded[0].rows, 3);
        assert_eq!(perturb("问：甲？", 0), "你好，请问甲？");
    }

    #[test]
    fn bad_suites_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.yaml");
        std::fs::write(&p, "name: t\ntask: guessing\ndatasets: []\nfields: {input: [q]}\n").unwrap();
        let e = Suite::load(&p).unwrap_err().to_string();
        assert!(e.contains("bad.yaml") && e.contains("line 2"), "{e}");
    }
}
