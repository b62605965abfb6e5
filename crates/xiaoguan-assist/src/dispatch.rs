//! 派单: ranking the departments for a ticket. Written 权责匹配规则 (who handles what, cross-
//! department cases and 一件事 bundles with their lead departments) are applied alongside the
//! department classifier; a matched rule is shown as the reason. Every name is then resolved in
//! the city's unit directory (`units_file`), so the ranking reads the home city's units, and a
//! rule that says a matter is handled in the town proposes the town's office (直派镇街). Editing
//! the rules or units file changes dispatch without retraining.

use crate::classify::spec::toml_error;
use crate::classify::Prediction;
use crate::error::{AssistError, Result};
use crate::units::{Resolved, TownMatch, UnitDirectory};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    /// Within one town the matter is handled locally: dispatch straight to this town office
    /// (an id of `[[town_offices]]` in the units file).
    #[serde(default)]
    pub town_office: Option<String>,
}

fn one() -> f32 {
    1.0
}

/// One item of a bundle with who handles it, nationally and in the home city.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ItemUnit {
    pub item: String,
    /// The 责任部门 column (a kind of national body).
    pub national_body: Option<String>,
    pub national_lead: bool,
    /// The home city's unit (None where the bundle is built by the national ministries).
    pub unit: Option<String>,
    pub lead: bool,
}

/// A 一件事 bundle: several items done as one, with a lead department.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub name: String,
    /// The local lead department (a dispatch unit); empty where `note` says who builds it.
    #[serde(default)]
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
    /// Each item with its national body and local unit (the 2025 分工表); empty for bundles
    /// written with `items` and `departments` only.
    #[serde(default)]
    pub item_units: Vec<ItemUnit>,
    /// What the document says instead of a local lead ("此“一件事”由国家部委统筹建设").
    #[serde(default)]
    pub note: Option<String>,
}

/// Where more bundles come from: a file of the rules folder or of the data root.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleSource {
    pub path: PathBuf,
    #[serde(default)]
    pub base: BundleBase,
    #[serde(default)]
    pub format: BundleFormat,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BundleBase {
    /// Relative to the rules file.
    #[default]
    Rules,
    /// Relative to the data root (`XIAOGUAN_DATA_ROOT`, default ../shared/data beside the checkout).
    Data,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BundleFormat {
    /// An array of `Bundle` objects.
    #[default]
    Bundles,
    /// A 分工表 transcription: `no`, `name`, `batch`, `dongguan_lead_unit`, `dongguan_note`,
    /// `source`, `items[]` with `item`, `national_body`, `national_lead`, `dongguan_unit`,
    /// `dongguan_lead` (dongguan_yiwangtongban/README.md).
    DivisionTable,
}

/// Words (written by the project) that put a question in a bundle read from a data file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleWords {
    pub bundle: String,
    pub any: Vec<String>,
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
    #[serde(default)]
    pub bundle_sources: Vec<BundleSource>,
    #[serde(default)]
    pub bundle_words: Vec<BundleWords>,
    /// The home city's unit directory (relative to the rules file).
    #[serde(default)]
    pub units_file: Option<String>,
    #[serde(skip)]
    pub units: Option<UnitDirectory>,
}

/// Bundles from a 分工表 transcription; a record missing a field is named by its number.
pub fn bundles_from_division_table(path: &Path, text: &str) -> Result<Vec<Bundle>> {
    let bad = |m: String| AssistError::InvalidInput(format!("{}: {m}", path.display()));
    let rows: Vec<Value> = serde_json::from_str(text).map_err(|e| bad(format!("line {}: {e}", e.line())))?;
    let mut out = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::trim).filter(|x| !x.is_empty()).map(String::from);
        let b = |v: &Value, k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
        let name = s(row, "name").ok_or_else(|| bad(format!("record {}: no `name`", i + 1)))?;
        let items = row.get("items").and_then(Value::as_array).ok_or_else(|| bad(format!("record {} ({name}): no `items` array", i + 1)))?;
        let mut item_units = Vec::new();
        for (j, it) in items.iter().enumerate() {
            let item = s(it, "item").ok_or_else(|| bad(format!("record {} ({name}) item {}: no `item`", i + 1, j + 1)))?;
            item_units.push(ItemUnit { item, national_body: s(it, "national_body"), national_lead: b(it, "national_lead"), unit: s(it, "dongguan_unit"), lead: b(it, "dongguan_lead") });
        }
        let lead = s(row, "dongguan_lead_unit").unwrap_or_default();
        let note = s(row, "dongguan_note");
        if lead.is_empty() && note.is_none() {
            return Err(bad(format!("record {} ({name}): neither `dongguan_lead_unit` nor `dongguan_note`", i + 1)));
        }
        let mut departments: Vec<String> = Vec::new();
        // A cell may name several units ("市市场监管局、东莞海关").
        for u in item_units.iter().filter_map(|u| u.unit.as_deref()).flat_map(|u| u.split(['、', ' '])) {
            let u = u.trim();
            if !u.is_empty() && u != lead && !departments.iter().any(|d| d == u) && u != "涉及部门按职能分别负责" {
                departments.push(u.to_string());
            }
        }
        let mut national: Vec<String> = item_units.iter().filter(|u| u.national_lead).filter_map(|u| u.national_body.clone()).collect();
        national.dedup();
        out.push(Bundle {
            items: item_units.iter().map(|u| u.item.clone()).collect(),
            any: vec![name.clone()],
            name,
            lead,
            departments,
            source: s(row, "source").unwrap_or_default(),
            national_lead: national.join("、"),
            batch: s(row, "batch").unwrap_or_default(),
            item_units,
            note,
        });
    }
    Ok(out)
}

/// The data root for `base = "data"` bundle sources: `XIAOGUAN_DATA_ROOT`, else ../shared/data
/// beside the checkout that holds the rules folder.
fn default_data_root(rules_path: &Path) -> PathBuf {
    if let Some(d) = std::env::var_os("XIAOGUAN_DATA_ROOT") {
        return PathBuf::from(d);
    }
    let rules_dir = std::fs::canonicalize(rules_path).ok().and_then(|p| p.parent().map(Path::to_path_buf)).unwrap_or_default();
    rules_dir.join("../../shared/data")
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
        if b.any.is_empty() || (b.lead.trim().is_empty() && b.note.is_none()) || b.items.is_empty() {
            return Err(format!("bundle '{}' needs a lead (or a note), at least one item and one word in `any`", b.name));
        }
        if !seen.insert(b.name.as_str()) {
            return Err(format!("bundle '{}' is written twice", b.name));
        }
    }
    Ok(())
}

/// A unit's score, reasons, whether it resolved to a unit, and the labels behind it.
type Slot = (f32, Vec<String>, bool, Vec<String>);

#[derive(Debug, Clone, Serialize)]
pub struct RuleMatch {
    pub rule: String,
    pub departments: Vec<String>,
    pub reason: String,
    pub matched_words: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DepartmentScore {
    /// The home city's unit, or 需人工确认（label） when the label has none.
    pub department: String,
    pub confidence: f32,
    pub reasons: Vec<String>,
    /// False when the name could not be resolved to a unit: a person picks the unit.
    pub mapped: bool,
    /// The classifier labels and rule names that point at this unit.
    pub labels: Vec<String>,
}

/// 直派镇街: the town office a ticket can go to directly, or why a person must decide.
#[derive(Debug, Clone, Serialize)]
pub struct DirectDispatch {
    pub towns: Vec<TownMatch>,
    /// The town office (e.g. "虎门镇综合行政执法办") when one town and a local rule match.
    pub unit: Option<String>,
    pub rule: Option<String>,
    pub reason: String,
    pub needs_review: bool,
}

impl DispatchRules {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => AssistError::InvalidInput(format!("{}: no such rules file", path.display())),
            _ => AssistError::io("read", path, e),
        })?;
        let mut rules = Self::parse(&text).map_err(|m| AssistError::InvalidInput(format!("{}: {m}", path.display())))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        if let Some(file) = rules.bundles_file.clone() {
            let bundles_path = dir.join(&file);
            rules.bundles.extend(load_bundles(&bundles_path)?);
            validate_bundles(&rules.bundles).map_err(|m| AssistError::InvalidInput(format!("{}: {m}", bundles_path.display())))?;
        }
        for src in rules.bundle_sources.clone() {
            let file = match src.base {
                BundleBase::Rules => dir.join(&src.path),
                BundleBase::Data => default_data_root(path).join(&src.path),
            };
            let mut bundles = match src.format {
                BundleFormat::Bundles => load_bundles(&file)?,
                BundleFormat::DivisionTable => {
                    let text = std::fs::read_to_string(&file).map_err(|e| match e.kind() {
                        std::io::ErrorKind::NotFound => AssistError::InvalidInput(format!(
                            "{}: no such bundles file (named in {}; set XIAOGUAN_DATA_ROOT to the data folder)",
                            file.display(),
                            path.display()
                        )),
                        _ => AssistError::io("read", &file, e),
                    })?;
                    bundles_from_division_table(&file, &text)?
                }
            };
            for b in &mut bundles {
                for w in rules.bundle_words.iter().filter(|w| w.bundle == b.name) {
                    b.any.extend(w.any.iter().cloned());
                }
            }
            rules.bundles.extend(bundles);
            validate_bundles(&rules.bundles).map_err(|m| AssistError::InvalidInput(format!("{}: {m}", file.display())))?;
        }
        if let Some(w) = rules.bundle_words.iter().find(|w| !rules.bundles.iter().any(|b| b.name == w.bundle)) {
            return Err(AssistError::InvalidInput(format!("{}: bundle_words names no bundle '{}'", path.display(), w.bundle)));
        }
        if let Some(file) = rules.units_file.clone() {
            rules.units = Some(UnitDirectory::load(&dir.join(file))?);
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

    /// What a label (classifier, rule or bundle unit name) dispatches to in the home city.
    /// Without a units file every name is taken as it is.
    pub fn resolve(&self, label: &str) -> Resolved {
        let generic = self.canonical(label);
        match &self.units {
            None => Resolved::Unit { name: generic },
            Some(u) => match u.resolve(label) {
                Resolved::Unknown { .. } => u.resolve(&generic),
                found => found,
            },
        }
    }

    /// A bundle with its lead and co-handling units named as the unit directory names them
    /// (a name the directory does not know is kept as written).
    pub fn localized(&self, b: &Bundle) -> Bundle {
        let name = |u: &str| if self.units.is_some() && self.resolve(u).is_unit() { self.unit_name(u) } else { u.to_string() };
        let mut b = b.clone();
        if !b.lead.is_empty() {
            b.lead = name(&b.lead);
        }
        b.departments = b.departments.iter().map(|d| name(d)).collect();
        b
    }

    /// The name a label is ranked under: the home city's unit, or 需人工确认（label）.
    pub fn unit_name(&self, label: &str) -> String {
        self.resolve(label).display()
    }

    /// 直派镇街: when the ticket names one town and a matched rule says the matter is handled in
    /// the town, that town's office; several towns, or a town office the units file lacks, go to a
    /// person; no town, or no local rule, leaves the city unit.
    pub fn direct_dispatch(&self, text: &str, matches: &[RuleMatch]) -> Option<DirectDispatch> {
        let units = self.units.as_ref()?;
        let towns = units.towns_in(text);
        if towns.is_empty() {
            return None;
        }
        let local: Vec<(&Rule, &RuleMatch)> =
            matches.iter().filter_map(|m| self.rules.iter().find(|r| r.id == m.rule && r.town_office.is_some()).map(|r| (r, m))).collect();
        let names: Vec<&str> = towns.iter().map(|t| t.town.as_str()).collect();
        let (unit, rule, reason, needs_review) = match (towns.len(), local.first()) {
            (1, Some((r, m))) => match units.town_office(r.town_office.as_deref().unwrap_or_default(), &towns[0].town) {
                Some(office) => (
                    Some(office.clone()),
                    Some(r.id.clone()),
                    format!("权责规则 {}：{}（命中“{}”），属地在{}：直派{}", r.id, r.reason, m.matched_words.join("、"), towns[0].town, office),
                    false,
                ),
                None => (None, Some(r.id.clone()), format!("规则 {} 的镇街单位“{}”未在单位目录中：需人工确认", r.id, r.town_office.as_deref().unwrap_or_default()), true),
            },
            (1, None) => (None, None, format!("诉求涉及{}，但没有属地办理的权责规则：派市直单位", towns[0].town), false),
            (_, Some((r, _))) => (None, Some(r.id.clone()), format!("诉求涉及多个镇街（{}），属地不唯一：需人工确认", names.join("、")), true),
            (_, None) => (None, None, format!("诉求涉及多个镇街（{}）", names.join("、")), true),
        };
        Some(DirectDispatch { towns, unit, rule, reason, needs_review })
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
                let mut departments: Vec<String> = (!b.lead.is_empty()).then(|| b.lead.clone()).into_iter().collect();
                departments.extend(b.departments.iter().filter(|d| **d != b.lead).cloned());
                let who = if b.lead.is_empty() { b.note.clone().unwrap_or_default() } else { format!("由{}牵头", b.lead) };
                out.push(RuleMatch {
                    rule: format!("一件事:{}", b.name),
                    departments,
                    reason: format!("属于“{}”，{who}，联办事项：{}", b.name, b.items.join("、")),
                    matched_words: hit,
                });
            }
        }
        out
    }

    /// The ranking slot of the unit a label resolves to (created on first use).
    fn slot<'a>(&self, score: &'a mut BTreeMap<String, Slot>, label: &str) -> &'a mut Slot {
        let resolved = self.resolve(label);
        let e = score.entry(resolved.display()).or_insert_with(|| (0.0, Vec::new(), resolved.is_unit(), Vec::new()));
        if !e.3.iter().any(|l| l == label) {
            e.3.push(label.to_string());
        }
        if let Resolved::Unmapped { reason, .. } = &resolved {
            if !e.1.iter().any(|r| r == reason) {
                e.1.push(reason.clone());
            }
        }
        e
    }

    fn weight_of(&self, rule: &str) -> f32 {
        self.rules.iter().find(|r| r.id == rule).map(|r| r.weight).unwrap_or(1.0)
    }

    /// Rank departments: the classifier's distribution plus a bonus for each matching rule
    /// (the lead department more than the co-handlers), renormalized.
    pub fn rank(&self, text: &str, classifier: Option<&Prediction>, rule_bonus: f32) -> (Vec<DepartmentScore>, Vec<RuleMatch>) {
        let matches = self.matches(text);
        let mut score: BTreeMap<String, Slot> = BTreeMap::new();
        if let Some(p) = classifier {
            let similar: Vec<String> = p.neighbours.iter().take(3).map(|n| format!("{}（相似度{:.2}）", self.unit_name(&n.label), n.similarity)).collect();
            for (i, r) in p.ranked.iter().enumerate() {
                let e = self.slot(&mut score, &r.label);
                e.0 += r.confidence;
                if i == 0 {
                    let mut why = format!("分类模型判断（置信度{:.2}）", r.confidence);
                    if !similar.is_empty() {
                        why.push_str(&format!("；相似历史工单承办单位：{}", similar.join("、")));
                    }
                    e.1.push(why);
                }
            }
        }
        for m in &matches {
            let w = self.weight_of(&m.rule) * rule_bonus;
            for (i, d) in m.departments.iter().enumerate() {
                let e = self.slot(&mut score, d);
                e.0 += if i == 0 { w } else { w * 0.5 };
                e.1.push(format!("权责规则 {}：{}（命中“{}”）", m.rule, m.reason, m.matched_words.join("、")));
            }
        }
        let total: f32 = score.values().map(|v| v.0).sum::<f32>().max(1e-9);
        let mut ranked: Vec<DepartmentScore> = score
            .into_iter()
            .map(|(department, (s, reasons, mapped, labels))| DepartmentScore { department, confidence: s / total, reasons, mapped, labels })
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

    fn project_rules() -> DispatchRules {
        DispatchRules::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/dispatch.toml")).unwrap()
    }

    /// The project's rules and bundles: every unit a rule or bundle names is a unit of the
    /// Dongguan directory, so dispatch never suggests a misspelt or another city's unit.
    #[test]
    fn project_rules_and_bundles_name_dongguan_units() {
        let r = project_rules();
        assert_eq!(r.bundles.len(), 11 + 12, "the 2024 bundles and the 2025 first batch");
        for rule in &r.rules {
            for d in &rule.departments {
                assert!(r.resolve(d).is_unit(), "rule {}: {d} is no Dongguan unit", rule.id);
            }
        }
        for b in &r.bundles {
            for d in std::iter::once(&b.lead).filter(|l| !l.is_empty()).chain(&b.departments) {
                assert!(r.resolve(d).is_unit(), "bundle {}: {d} is no Dongguan unit", b.name);
            }
            assert!(!b.batch.is_empty(), "bundle {} lacks its batch", b.name);
        }
        let (ranked, m) = r.rank("个体户转企业需要重新办营业执照吗", None, 1.0);
        assert!(m.iter().any(|x| x.rule == "一件事:个体工商户转型为企业"), "{m:?}");
        assert_eq!(ranked[0].department, "市市场监管局");
        assert!(ranked.iter().all(|d| d.mapped), "{ranked:?}");
    }

    /// The 2025 batch as the city's 分工表 says: each item's Dongguan unit and the lead.
    #[test]
    fn division_table_bundles() {
        let json = r#"[{"batch": "2025年度第一批", "no": 2, "name": "合格境外投资者资格审批与开户", "dongguan_lead_unit": null,
            "dongguan_note": "此“一件事”由国家部委统筹建设", "source": "附件2",
            "items": [{"item": "合格境外投资者资格审批", "national_body": "证监部门", "national_lead": true, "dongguan_unit": null, "dongguan_lead": false}]},
          {"batch": "2025年度第一批", "no": 5, "name": "新车上牌", "dongguan_lead_unit": "市公安局", "dongguan_note": null, "source": "附件2",
            "items": [{"item": "机动车注册登记", "national_body": "公安部门", "national_lead": true, "dongguan_unit": "市公安局", "dongguan_lead": true},
                      {"item": "进口车强制性产品认证(CCC认证)信息核查", "national_body": "市场监管部门、海关部门", "national_lead": false, "dongguan_unit": "市市场监管局、东莞海关", "dongguan_lead": false}]}]"#;
        let b = bundles_from_division_table(Path::new("t.json"), json).unwrap();
        assert_eq!(b[0].lead, "");
        assert_eq!(b[0].note.as_deref(), Some("此“一件事”由国家部委统筹建设"));
        assert_eq!(b[0].national_lead, "证监部门");
        assert_eq!(b[1].lead, "市公安局");
        assert_eq!(b[1].departments, ["市市场监管局", "东莞海关"], "a cell naming two units is split");
        assert_eq!(b[1].item_units[1].unit.as_deref(), Some("市市场监管局、东莞海关"));
        let err = bundles_from_division_table(Path::new("t.json"), r#"[{"name": "x", "items": []}]"#).unwrap_err().to_string();
        assert!(err.contains("t.json") && err.contains("neither"), "{err}");
        let err = bundles_from_division_table(Path::new("t.json"), "[\n{\"name\": 3}").unwrap_err().to_string();
        assert!(err.contains("line 2") || err.contains("line 1"), "{err}");
    }

    /// What the classifier can say is always a Dongguan unit or an explicit "not mapped": every
    /// department label of the dev data (the classifier's training labels) resolves.
    #[test]
    fn every_classifier_label_has_a_dongguan_unit_or_says_not_mapped() {
        let r = project_rules();
        let data = std::env::var_os("XIAOGUAN_DATA_ROOT")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
        let path = data.join("msgabench/gov_qa.jsonl");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (the real data must be beside the checkout)", path.display()));
        let units = r.units.as_ref().expect("units file");
        let mut labels = std::collections::BTreeSet::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line).unwrap();
            labels.insert(r.canonical(v["department"].as_str().unwrap_or_default()));
        }
        for l in &labels {
            let resolved = r.resolve(l);
            let explicit = resolved.is_unit() || units.unmapped.iter().any(|u| &u.label == l);
            assert!(explicit, "classifier label '{l}' has no Dongguan unit and no [[unmapped]] entry in rules/units.toml");
        }
        assert_eq!(r.unit_name("规划自然资源委"), "市自然资源局");
        assert_eq!(r.unit_name("首都之窗"), "市政务和数据局");
        assert_eq!(r.unit_name(""), "需人工确认");
    }

    #[test]
    fn wage_arrears_and_town_matters() {
        let r = project_rules();
        let (ranked, m) = r.rank("老板拖欠我们三个月工资，我们准备明天一起去市政府门口讨说法", None, 0.15);
        assert_eq!(ranked[0].department, "市人力资源社会保障局", "{ranked:?}");
        assert!(r.direct_dispatch("老板拖欠我们三个月工资", &m).is_none(), "no town named: the city unit");
        let text = "虎门镇某小区楼下烧烤店每晚噪音扰民到凌晨两点";
        let (ranked, m) = r.rank(text, None, 0.15);
        let d = r.direct_dispatch(text, &m).expect("a town is named");
        assert_eq!(d.unit.as_deref(), Some("虎门镇综合行政执法办"), "{d:?}");
        assert!(!d.needs_review && d.reason.contains("town-nuisance"), "{d:?}");
        assert_eq!(ranked[0].department, "市城市管理综合执法局");
        let text = "长安镇和虎门镇交界处有人占道经营";
        let (_, m) = r.rank(text, None, 0.15);
        let d = r.direct_dispatch(text, &m).unwrap();
        assert!(d.needs_review && d.unit.is_none() && d.towns.len() == 2, "{d:?}");
        let text = "松山湖园区有企业想咨询研发费用加计扣除";
        let (_, m) = r.rank(text, None, 0.15);
        let d = r.direct_dispatch(text, &m).unwrap();
        assert!(d.unit.is_none() && !d.needs_review && d.reason.contains("派市直单位"), "{d:?}");
    }
}
