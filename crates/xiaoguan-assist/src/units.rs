//! The home city's unit directory (`rules/units.toml`): the 承办单位 ticket assist dispatches to,
//! the names that mean each of them, the labels that have no unit (需人工确认), and the 镇街/园区
//! a ticket may be about, for 直派. The department classifier keeps the labels it was trained on
//! (another city's unit names); this directory maps them, so a city edits a file, not a model.

use crate::classify::spec::toml_error;
use crate::error::{AssistError, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What an unmappable label is shown as.
pub const NEEDS_REVIEW: &str = "需人工确认";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unit {
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Shown with the unit when a mapping needs explaining (e.g. two labels merged into one unit).
    #[serde(default)]
    pub note: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unmapped {
    pub label: String,
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TownOffice {
    pub id: String,
    /// `{town}` (full name) and `{short}` (without 镇/街道) are filled in.
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Town {
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The short name is a common word: it names the town only before 镇/街道/村/社区 or after 东莞.
    #[serde(default)]
    pub short_needs_suffix: bool,
}

impl Town {
    pub fn short(&self) -> &str {
        self.name.strip_suffix("街道").or_else(|| self.name.strip_suffix('镇')).unwrap_or(&self.name)
    }

    pub fn kind(&self) -> &'static str {
        if self.name.ends_with("街道") {
            "街道"
        } else if self.name.ends_with('镇') {
            "镇"
        } else {
            "园区"
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UnitDirectory {
    pub province: String,
    pub city: String,
    #[serde(default)]
    pub units: Vec<Unit>,
    #[serde(default)]
    pub unmapped: Vec<Unmapped>,
    #[serde(default)]
    pub town_offices: Vec<TownOffice>,
    #[serde(default)]
    pub towns: Vec<Town>,
}

/// What a label (a classifier's, a rule's or a bundle's unit name) dispatches to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resolved {
    Unit { name: String },
    /// Listed as having no unit, with the reason.
    Unmapped { label: String, reason: String },
    /// Not in the directory at all: a gap in the file, also shown as 需人工确认.
    Unknown { label: String },
}

impl Resolved {
    /// The name shown in a department ranking.
    pub fn display(&self) -> String {
        match self {
            Resolved::Unit { name } => name.clone(),
            Resolved::Unmapped { label, .. } | Resolved::Unknown { label } if label.is_empty() => NEEDS_REVIEW.to_string(),
            Resolved::Unmapped { label, .. } | Resolved::Unknown { label } => format!("{NEEDS_REVIEW}（{label}）"),
        }
    }

    pub fn is_unit(&self) -> bool {
        matches!(self, Resolved::Unit { .. })
    }
}

/// A 镇街/园区 named in a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TownMatch {
    pub town: String,
    /// 镇, 街道 or 园区.
    pub kind: &'static str,
    /// The words in the text that named it.
    pub matched: String,
}

const SUFFIXES: &[&str] = &["镇", "街道", "街办", "村", "社区", "片区", "园区"];

impl UnitDirectory {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => AssistError::InvalidInput(format!("{}: no such units file", path.display())),
            _ => AssistError::io("read", path, e),
        })?;
        Self::parse(&text).map_err(|m| AssistError::InvalidInput(format!("{}: {m}", path.display())))
    }

    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let d: UnitDirectory = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        let mut seen = std::collections::HashMap::new();
        for u in &d.units {
            for n in std::iter::once(&u.name).chain(&u.aliases) {
                if let Some(other) = seen.insert(n.as_str(), u.name.as_str()) {
                    if other != u.name {
                        return Err(format!("'{n}' names both {other} and {}", u.name));
                    }
                }
            }
        }
        for t in &d.towns {
            if t.name.trim().is_empty() {
                return Err("a town without a name".into());
            }
        }
        Ok(d)
    }

    /// The unit a label means.
    pub fn resolve(&self, label: &str) -> Resolved {
        let label = label.trim();
        if let Some(u) = self.units.iter().find(|u| u.name == label || u.aliases.iter().any(|a| a == label)) {
            return Resolved::Unit { name: u.name.clone() };
        }
        if let Some(m) = self.unmapped.iter().find(|m| m.label == label) {
            return Resolved::Unmapped { label: m.label.clone(), reason: m.reason.clone() };
        }
        // "东莞市人力资源社会保障局" and "市人力资源社会保障局" are one unit.
        if let Some(rest) = label.strip_prefix(self.city.as_str()).or_else(|| label.strip_prefix(self.city.trim_end_matches('市'))) {
            let local = format!("市{}", rest.trim_start_matches('市'));
            if let Some(u) = self.units.iter().find(|u| u.name == local) {
                return Resolved::Unit { name: u.name.clone() };
            }
        }
        Resolved::Unknown { label: label.to_string() }
    }

    pub fn unit(&self, name: &str) -> Option<&Unit> {
        self.units.iter().find(|u| u.name == name)
    }

    /// Every 镇街/园区 the text names, in order of first mention.
    pub fn towns_in(&self, text: &str) -> Vec<TownMatch> {
        let mut found: Vec<(usize, TownMatch)> = Vec::new();
        for t in &self.towns {
            let mut names: Vec<&str> = std::iter::once(t.name.as_str()).chain(t.aliases.iter().map(String::as_str)).collect();
            // Longest first, so "松山湖园区" is reported rather than "松山湖".
            names.sort_by_key(|n| std::cmp::Reverse(n.chars().count()));
            let mut hit = names.iter().find_map(|n| text.find(n).map(|at| (at, n.to_string())));
            if hit.is_none() && t.short() != t.name {
                hit = text
                    .match_indices(t.short())
                    // "东莞城市…" holds "莞城" but names no town.
                    .filter(|(at, s)| !(s.starts_with('莞') && text[..*at].ends_with('东')))
                    .find(|(at, s)| !t.short_needs_suffix || Self::placed(text, *at, s.len()))
                    .map(|(at, s)| (at, s.to_string()));
            }
            if let Some((at, matched)) = hit {
                // "东城区" is a district of another city: Dongguan has no 区.
                let after = &text[at + matched.len()..];
                if matched == t.short() && after.starts_with('区') {
                    continue;
                }
                found.push((at, TownMatch { town: t.name.clone(), kind: t.kind(), matched }));
            }
        }
        found.sort_by_key(|(at, _)| *at);
        found.into_iter().map(|(_, m)| m).collect()
    }

    /// A short name at `at` is a place when a place suffix follows or 东莞 precedes it.
    fn placed(text: &str, at: usize, len: usize) -> bool {
        let after = &text[at + len..];
        SUFFIXES.iter().any(|s| after.starts_with(s)) || text[..at].ends_with("东莞") || text[..at].ends_with("东莞市")
    }

    /// The town office a rule dispatches to directly, e.g. "虎门镇综合行政执法办".
    pub fn town_office(&self, office: &str, town: &str) -> Option<String> {
        let o = self.town_offices.iter().find(|o| o.id == office)?;
        let t = self.towns.iter().find(|t| t.name == town)?;
        Some(o.name.replace("{town}", &t.name).replace("{short}", t.short()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project() -> UnitDirectory {
        UnitDirectory::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/units.toml")).unwrap()
    }

    #[test]
    fn labels_resolve_to_dongguan_units() {
        let d = project();
        assert_eq!(d.resolve("人力资源社会保障局"), Resolved::Unit { name: "市人力资源社会保障局".into() });
        assert_eq!(d.resolve("北京市医疗保障局").display(), "市医保局");
        assert_eq!(d.resolve("东莞市住房公积金管理中心").display(), "市住房公积金管理中心");
        assert_eq!(d.resolve("东莞市商务局").display(), "市商务局", "the city's full name is the same unit");
        assert_eq!(d.resolve("体育局"), d.resolve("文物局"), "two labels merge into one Dongguan unit");
        assert_eq!(d.resolve("").display(), NEEDS_REVIEW);
        let unknown = d.resolve("宇宙管理局");
        assert!(!unknown.is_unit() && unknown.display() == "需人工确认（宇宙管理局）", "{unknown:?}");
        assert_eq!(d.province, "广东省");
        assert_eq!(d.city, "东莞市");
    }

    #[test]
    fn towns_by_full_short_and_alias_names() {
        let d = project();
        let one = |text: &str| d.towns_in(text).into_iter().map(|m| m.town).collect::<Vec<_>>();
        let table: &[(&str, &[&str])] = &[
            ("虎门镇某小区夜间施工噪音扰民", &["虎门镇"]),
            ("虎门这边的工地晚上一直施工", &["虎门镇"]),
            ("南城街道西平社区占道经营", &["南城街道"]),
            ("南城的商铺", &[]),
            ("我在东莞南城上班", &["南城街道"]),
            ("松山湖园区的企业补贴怎么申请", &["松山湖"]),
            ("松山湖高新区和大朗镇交界的路灯坏了", &["松山湖", "大朗镇"]),
            ("桥头有个摊位一直占道", &[]),
            ("桥头镇邓屋村的路灯", &["桥头镇"]),
            ("北京市东城区的政策", &[]),
            ("长安镇和厚街都有这个问题", &["长安镇", "厚街镇"]),
            ("我要咨询养老保险", &[]),
            ("莞城西城楼附近噪音", &["莞城街道"]),
            ("东莞城市管理部门", &[]),
            ("樟木头镇", &["樟木头镇"]),
            ("东莞滨海湾新区的人才政策", &["滨海湾新区"]),
        ];
        for (text, want) in table {
            assert_eq!(one(text), *want, "{text}");
        }
        let m = &d.towns_in("松山湖园区的企业")[0];
        assert_eq!((m.kind, m.matched.as_str()), ("园区", "松山湖园区"));
        assert_eq!(d.towns.len(), 35, "4 街道, 28 镇 and 3 parks");
    }

    #[test]
    fn town_offices_and_bad_files() {
        let d = project();
        assert_eq!(d.town_office("enforcement", "虎门镇").as_deref(), Some("虎门镇综合行政执法办"));
        assert_eq!(d.town_office("labour", "南城街道").as_deref(), Some("市人力资源社会保障局南城分局"));
        assert!(d.town_office("nope", "虎门镇").is_none());
        let err = UnitDirectory::parse("province = \"广东省\"\ncity = \"东莞市\"\n[[units]]\nname = \"市a局\"\naliases = [\"x\"]\n[[units]]\nname = \"市b局\"\naliases = [\"x\"]\n").unwrap_err();
        assert!(err.contains("'x' names both"), "{err}");
        let err = UnitDirectory::parse("province = 1\n").unwrap_err();
        assert!(err.starts_with("line 1"), "{err}");
    }
}
