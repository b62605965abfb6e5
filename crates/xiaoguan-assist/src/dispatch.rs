//! 派单: ranking the departments for a ticket. Written 权责匹配规则 (who handles what, cross-
//! department cases and 一件事 bundles with their lead departments) are applied alongside the
//! department classifier; a matched rule is shown as the reason. Editing the rules file changes
//! dispatch without retraining.

use crate::classify::spec::toml_error;
use crate::classify::Prediction;
use crate::error::{AssistError, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Department {
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    /// Responsible departments, lead first.
    pub departments: Vec<String>,
    /// The rule matches when any of these words occurs…
    pub any: Vec<String>,
    /// …and all of these…
    #[serde(default)]
    pub all: Vec<String>,
    /// …and none of these.
    #[serde(default)]
    pub none: Vec<String>,
    pub reason: String,
    #[serde(default = "one")]
    pub weight: f32,
}

fn one() -> f32 {
    1.0
}

/// A 一件事 bundle: several items done as one, with a lead department.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub name: String,
    /// The local lead department (a dispatch unit).
    pub lead: String,
    /// Local co-handling departments.
    pub departments: Vec<String>,
    pub items: Vec<String>,
    /// Words that put a ticket or question in this bundle.
    pub any: Vec<String>,
    /// The issuing document (文号).
    #[serde(default)]
    pub source: String,
    /// The national lead body.
    #[serde(default)]
    pub national_lead: String,
    /// Which published list the bundle belongs to.
    #[serde(default)]
    pub batch: String,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DispatchRules {
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub departments: Vec<Department>,
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub bundles: Vec<Bundle>,
    /// A JSON array of bundles (relative to the rules file): the `one-thing` knowledge base's
    /// data, so a bundle is written once for dispatch, facts and retrieval.
    #[serde(default)]
    pub bundles_file: Option<String>,
}

/// Read a JSON array of bundles; a malformed file is named with the line of the error.
pub fn load_bundles(path: &Path) -> Result<Vec<Bundle>> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => AssistError::InvalidInput(format!("{}: no such bundles file", path.display())),
        _ => AssistError::io("read", path, e),
    })?;
    serde_json::from_str(&text).map_err(|e| AssistError::InvalidInput(format!("{}: {e}", path.display())))
}

fn validate_bundles(bundles: &[Bundle]) -> std::result::Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for b in bundles {
        if b.any.is_empty() || b.lead.trim().is_empty() || b.items.is_empty() {
            return Err(format!("bundle '{}' needs a lead, at least one item and one word in `any`", b.name));
        }
        if !seen.insert(b.name.as_str()) {
            return Err(format!("bundle '{}' is written twice", b.name));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleMatch {
    pub rule: String,
    pub departments: Vec<String>,
    pub reason: String,
    pub matched_words: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DepartmentScore {
    pub department: String,
    pub confidence: f32,
    pub reasons: Vec<String>,
}

impl DispatchRules {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => AssistError::InvalidInput(format!("{}: no such rules file", path.display())),
            _ => AssistError::io("read", path, e),
        })?;
        let mut rules = Self::parse(&text).map_err(|m| AssistError::InvalidInput(format!("{}: {m}", path.display())))?;
        if let Some(file) = rules.bundles_file.clone() {
            let bundles_path = path.parent().unwrap_or(Path::new(".")).join(&file);
            rules.bundles.extend(load_bundles(&bundles_path)?);
            validate_bundles(&rules.bundles).map_err(|m| AssistError::InvalidInput(format!("{}: {m}", bundles_path.display())))?;
        }
        Ok(rules)
    }

    /// The rules in `text`; a `bundles_file` is read by `load`, which knows where the file is.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let rules: DispatchRules = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        for r in &rules.rules {
            if r.departments.is_empty() || r.any.is_empty() {
                return Err(format!("rule '{}' needs at least one department and one word in `any`", r.id));
            }
        }
        validate_bundles(&rules.bundles)?;
        Ok(rules)
    }

    /// The canonical spelling of a department name (aliases from the rules file).
    pub fn canonical(&self, name: &str) -> String {
        let name = name.trim();
        self.departments
            .iter()
            .find(|d| d.name == name || d.aliases.iter().any(|a| a == name))
            .map(|d| d.name.clone())
            .unwrap_or_else(|| name.to_string())
    }

    /// Every rule and bundle whose words match the text.
    pub fn matches(&self, text: &str) -> Vec<RuleMatch> {
        let mut out = Vec::new();
        for r in &self.rules {
            let hit: Vec<String> = r.any.iter().filter(|w| text.contains(w.as_str())).cloned().collect();
            if !hit.is_empty() && r.all.iter().all(|w| text.contains(w.as_str())) && !r.none.iter().any(|w| text.contains(w.as_str())) {
                out.push(RuleMatch { rule: r.id.clone(), departments: r.departments.clone(), reason: r.reason.clone(), matched_words: hit });
            }
        }
        for b in &self.bundles {
            let hit: Vec<String> = b.any.iter().filter(|w| text.contains(w.as_str())).cloned().collect();
            if !hit.is_empty() {
                let mut departments = vec![b.lead.clone()];
                departments.extend(b.departments.iter().filter(|d| **d != b.lead).cloned());
                out.push(RuleMatch {
                    rule: format!("一件事:{}", b.name),
                    departments,
                    reason: format!("属于“{}”，由{}牵头，联办事项：{}", b.name, b.lead, b.items.join("、")),
                    matched_words: hit,
                });
            }
        }
        out
    }

    fn weight_of(&self, rule: &str) -> f32 {
        self.rules.iter().find(|r| r.id == rule).map(|r| r.weight).unwrap_or(1.0)
    }

    /// Rank departments: the classifier's distribution plus a bonus for each matching rule
    /// (the lead department more than the co-handlers), renormalized.
    pub fn rank(&self, text: &str, classifier: Option<&Prediction>, rule_bonus: f32) -> (Vec<DepartmentScore>, Vec<RuleMatch>) {
        let matches = self.matches(text);
        let mut score: BTreeMap<String, (f32, Vec<String>)> = BTreeMap::new();
        if let Some(p) = classifier {
            for r in &p.ranked {
                let e = score.entry(self.canonical(&r.label)).or_default();
                e.0 += r.confidence;
            }
            let similar: Vec<String> = p.neighbours.iter().take(3).map(|n| format!("{}（相似度{:.2}）", n.label, n.similarity)).collect();
            if let Some(top) = p.ranked.first() {
                let e = score.entry(self.canonical(&top.label)).or_default();
                let mut why = format!("分类模型判断（置信度{:.2}）", top.confidence);
                if !similar.is_empty() {
                    why.push_str(&format!("；相似历史工单承办单位：{}", similar.join("、")));
                }
                e.1.push(why);
            }
        }
        for m in &matches {
            let w = self.weight_of(&m.rule) * rule_bonus;
            for (i, d) in m.departments.iter().enumerate() {
                let e = score.entry(self.canonical(d)).or_default();
                e.0 += if i == 0 { w } else { w * 0.5 };
                e.1.push(format!("权责规则 {}：{}（命中“{}”）", m.rule, m.reason, m.matched_words.join("、")));
            }
        }
        let total: f32 = score.values().map(|v| v.0).sum::<f32>().max(1e-9);
        let mut ranked: Vec<DepartmentScore> = score
            .into_iter()
            .map(|(department, (s, reasons))| DepartmentScore { department, confidence: s / total, reasons })
            .collect();
        ranked.sort_by(|a, b| b.confidence.total_cmp(&a.confidence).then(a.department.cmp(&b.department)));
        (ranked, matches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"
version = "t"
[[departments]]
name = "交管局"
aliases = ["北京市公安局公安交通管理局"]
[[rules]]
id = "traffic-tickets"
departments = ["交管局"]
any = ["违章", "驾驶证"]
none = ["公交"]
reason = "机动车驾驶证、交通违法处理由公安交管部门负责"
[[rules]]
id = "pension"
departments = ["人力资源社会保障局", "医保局"]
any = ["养老保险"]
reason = "社会保险登记与待遇由人社部门负责"
[[bundles]]
name = "新生儿出生一件事"
lead = "卫生健康委"
departments = ["公安局", "医保局"]
items = ["出生医学证明", "户口登记", "医保参保"]
any = ["出生医学证明", "新生儿"]
"#;

    #[test]
    fn aliases_rules_and_bundles() {
        let r = DispatchRules::parse(RULES).unwrap();
        assert_eq!(r.canonical("北京市公安局公安交通管理局"), "交管局");
        assert_eq!(r.canonical("体育局"), "体育局");
        let (ranked, m) = r.rank("驾驶证到期了怎么换", None, 1.0);
        assert_eq!(m.len(), 1);
        assert_eq!(ranked[0].department, "交管局");
        assert!(ranked[0].reasons[0].contains("traffic-tickets"));
        assert!(r.matches("公交车违章停车").is_empty(), "an excluded word vetoes the rule");
        let (ranked, _) = r.rank("新生儿怎么办医保", None, 1.0);
        assert_eq!(ranked[0].department, "卫生健康委", "the bundle's lead ranks first");
        assert!(ranked.iter().any(|d| d.department == "医保局"));
    }

    #[test]
    fn bad_rules_name_the_line() {
        let err = DispatchRules::parse("[[rules]]\nid = \"x\"\ndepartments = []\nany = [\"a\"]\nreason = \"r\"\n").unwrap_err();
        assert!(err.contains("needs at least one department"), "{err}");
        let err = DispatchRules::parse("[[rules]]\nid = 3\n").unwrap_err();
        assert!(err.starts_with("line 2"), "{err}");
    }

    #[test]
    fn bundles_from_a_file_beside_the_rules() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("kb")).unwrap();
        let rules = dir.path().join("rules.toml");
        std::fs::write(&rules, "bundles_file = \"kb/bundles.json\"\n").unwrap();
        std::fs::write(
            dir.path().join("kb/bundles.json"),
            r#"[{"name": "退休一件事", "lead": "人社局", "departments": ["医保局"], "items": ["退休申请"], "any": ["办理退休"], "national_lead": "人力资源社会保障部"}]"#,
        )
        .unwrap();
        let r = DispatchRules::load(&rules).unwrap();
        assert_eq!(r.bundles.len(), 1);
        assert_eq!(r.bundles[0].national_lead, "人力资源社会保障部");
        assert_eq!(r.rank("怎么办理退休", None, 1.0).0[0].department, "人社局");

        std::fs::write(
            dir.path().join("kb/bundles.json"),
            "[\n{\"name\": \"x\",\n \"lead\": 3}]",
        )
        .unwrap();
        let err = DispatchRules::load(&rules).unwrap_err().to_string();
        assert!(err.contains("bundles.json: ") && err.contains("line 3"), "{err}");
        std::fs::write(
            dir.path().join("kb/bundles.json"),
            r#"[{"name": "a", "lead": "x", "departments": [], "items": ["i"], "any": ["w"]}, {"name": "a", "lead": "y", "departments": [], "items": ["i"], "any": ["v"]}]"#,
        )
        .unwrap();
        assert!(DispatchRules::load(&rules)
            .unwrap_err()
            .to_string()
            .contains("written twice"));
        std::fs::remove_file(dir.path().join("kb/bundles.json")).unwrap();
        assert!(DispatchRules::load(&rules)
            .unwrap_err()
            .to_string()
            .contains("no such bundles file"));
    }

    /// The project's rules and the `one-thing` KB's bundles: every department a bundle names is a
    /// unit the rules know, so dispatch never suggests a misspelt department.
    #[test]
    fn project_bundles_name_known_departments() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let r = DispatchRules::load(&root.join("rules/dispatch.toml")).unwrap();
        assert!(r.bundles.len() >= 12, "{} bundles", r.bundles.len());
        let mut known: std::collections::HashSet<&str> =
            r.departments.iter().map(|d| d.name.as_str()).collect();
        known.extend(
            r.rules
                .iter()
                .flat_map(|x| x.departments.iter().map(String::as_str)),
        );
        for b in &r.bundles {
            for d in std::iter::once(&b.lead).chain(&b.departments) {
                assert!(
                    known.contains(r.canonical(d).as_str()),
                    "bundle {}: unknown department {d}",
                    b.name
                );
            }
            assert!(
                !b.national_lead.is_empty() && !b.batch.is_empty(),
                "bundle {} lacks its national lead or batch",
                b.name
            );
        }
        let (ranked, m) = r.rank("个体户转企业需要重新办营业执照吗", None, 1.0);
        assert!(
            m.iter()
                .any(|x| x.rule == "一件事:个体工商户转型为企业一件事"),
            "{m:?}"
        );
        assert_eq!(ranked[0].department, "市场监管局");
    }
}
