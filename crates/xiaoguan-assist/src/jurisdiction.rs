//! Jurisdiction: which documents state the rule that applies to the home region (广东省 / 东莞市).
//! National texts and the home province's and city's texts apply; another region's local
//! regulation or policy never is the rule, at most a reference (外地规定，仅供参考). A document's
//! region is read from what the KB knows of it: its `region` payload (a source's region), the
//! LawRefBook folder of local regulations (`DLC/<省>地方法规/`), and its title.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The region the service answers for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HomeRegion {
    /// "广东省"
    pub province: String,
    /// "东莞市"
    pub city: String,
    /// Knowledge bases whose documents are all taken as applicable (a KB widened explicitly).
    #[serde(default)]
    pub widen_kbs: Vec<String>,
}

/// Where a document's rule holds, seen from the home region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "scope", content = "region", rename_all = "snake_case")]
pub enum Scope {
    National,
    /// The home province's or city's own text ("广东省", "东莞市").
    Home(String),
    /// Another region's local text ("浙江省", "广州市", "北京市").
    Foreign(String),
}

impl Scope {
    pub fn applies(&self) -> bool {
        !matches!(self, Scope::Foreign(_))
    }

    /// The label shown beside a reference that does not apply.
    pub fn reference_note(&self) -> Option<String> {
        match self {
            Scope::Foreign(r) => Some(format!("外地规定（{r}），仅供参考")),
            _ => None,
        }
    }
}

/// Province-level regions: short name and full name.
const PROVINCES: &[(&str, &str)] = &[
    ("北京", "北京市"), ("天津", "天津市"), ("上海", "上海市"), ("重庆", "重庆市"), ("河北", "河北省"), ("山西", "山西省"),
    ("辽宁", "辽宁省"), ("吉林", "吉林省"), ("黑龙江", "黑龙江省"), ("江苏", "江苏省"), ("浙江", "浙江省"), ("安徽", "安徽省"),
    ("福建", "福建省"), ("江西", "江西省"), ("山东", "山东省"), ("河南", "河南省"), ("湖北", "湖北省"), ("湖南", "湖南省"),
    ("广东", "广东省"), ("海南", "海南省"), ("四川", "四川省"), ("贵州", "贵州省"), ("云南", "云南省"), ("陕西", "陕西省"),
    ("甘肃", "甘肃省"), ("青海", "青海省"), ("台湾", "台湾省"), ("内蒙古", "内蒙古自治区"), ("广西", "广西壮族自治区"),
    ("西藏", "西藏自治区"), ("宁夏", "宁夏回族自治区"), ("新疆", "新疆维吾尔自治区"), ("香港", "香港特别行政区"), ("澳门", "澳门特别行政区"),
];

fn short(name: &str) -> &str {
    for suffix in ["维吾尔自治区", "壮族自治区", "回族自治区", "特别行政区", "自治区", "省", "市"] {
        if let Some(s) = name.strip_suffix(suffix) {
            if !s.is_empty() {
                return s;
            }
        }
    }
    name
}

fn province_full(short_name: &str) -> Option<&'static str> {
    PROVINCES.iter().find(|(s, _)| *s == short_name).map(|(_, f)| *f)
}

/// The city a local text's title starts with ("杭州市…", "深圳经济特区…"), when it names one.
fn city_of_title(title: &str) -> Option<String> {
    let head: String = title.chars().take(8).collect();
    for marker in ["经济特区", "市"] {
        if let Some(i) = head.find(marker) {
            let name = &head[..i];
            let n = name.chars().count();
            if (2..=4).contains(&n) {
                return Some(format!("{name}市"));
            }
        }
    }
    None
}

impl HomeRegion {
    pub fn new(province: &str, city: &str) -> Self {
        Self { province: province.into(), city: city.into(), widen_kbs: Vec::new() }
    }

    /// The scope of a region name ("广州", "广东省", "东莞", "北京").
    fn scope_of_region(&self, region: &str) -> Scope {
        let r = short(region.trim());
        if r == short(&self.city) {
            Scope::Home(self.city.clone())
        } else if r == short(&self.province) {
            Scope::Home(self.province.clone())
        } else if let Some(full) = province_full(r) {
            Scope::Foreign(full.to_string())
        } else {
            Scope::Foreign(format!("{r}市"))
        }
    }

    /// The scope of a provincial-level text of `province` (short name), refined by its title:
    /// a city's text of the home province is the home city's or another city's.
    fn scope_in_province(&self, province: &str, title: &str) -> Scope {
        if province != short(&self.province) {
            return Scope::Foreign(province_full(province).map(String::from).unwrap_or_else(|| province.to_string()));
        }
        if title.starts_with(short(&self.province)) {
            return Scope::Home(self.province.clone());
        }
        match city_of_title(title) {
            Some(c) if short(&c) == short(&self.city) => Scope::Home(self.city.clone()),
            Some(c) => Scope::Foreign(c),
            None => Scope::Home(self.province.clone()),
        }
    }

    /// A document's scope from its payload (`region`, `issuer`, `source_path`) and title.
    pub fn scope(&self, payload: &Map<String, Value>, title: &str) -> Scope {
        let s = |k: &str| payload.get(k).and_then(Value::as_str).unwrap_or_default();
        let issuer = s("issuer");
        // A national or provincial text republished on a city's portal keeps its own level.
        if issuer.starts_with("国务院") || issuer.starts_with("国家") || issuer.starts_with("中华人民共和国") {
            return Scope::National;
        }
        if let Some(p) = PROVINCES.iter().find(|(sh, _)| issuer.starts_with(sh) && issuer[sh.len()..].starts_with(['省', '自'])) {
            return self.scope_in_province(p.0, title);
        }
        let region = s("region");
        if !region.is_empty() {
            return self.scope_of_region(region);
        }
        // LawRefBook keeps local regulations under DLC/<省>地方法规/.
        let path = s("source_path");
        if let Some(rest) = path.split("地方法规/").next().filter(|_| path.contains("地方法规/")) {
            let province = rest.rsplit('/').next().unwrap_or_default();
            if !province.is_empty() {
                return self.scope_in_province(province, title);
            }
        }
        if title.starts_with("中华人民共和国") || title.starts_with("国务院") || title.starts_with("全国") {
            return Scope::National;
        }
        if let Some((p, _)) = PROVINCES.iter().find(|(sh, _)| title.starts_with(sh)) {
            return self.scope_in_province(p, title);
        }
        if title.starts_with(short(&self.city)) {
            return Scope::Home(self.city.clone());
        }
        Scope::National
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn scopes_of_real_titles_and_paths() {
        let home = HomeRegion::new("广东省", "东莞市");
        let law = |path: &str, title: &str| home.scope(&payload(json!({"source_path": path, "doc_type": "law"})), title);
        assert_eq!(law("lawrefbook_laws/社会法/社会保险法(2018-12-29).md", "中华人民共和国社会保险法"), Scope::National);
        assert_eq!(law("lawrefbook_laws/行政法规/工伤保险条例(2010-12-20).md", "工伤保险条例"), Scope::National);
        assert_eq!(
            law("lawrefbook_laws/DLC/浙江地方法规/地方性法规/浙江/浙江省职工基本养老保险条例.md", "浙江省职工基本养老保险条例"),
            Scope::Foreign("浙江省".into())
        );
        assert_eq!(law("lawrefbook_laws/DLC/浙江地方法规/地方性法规/浙江/杭州市失业保险条例.md", "杭州市失业保险条例"), Scope::Foreign("浙江省".into()));
        assert_eq!(law("lawrefbook_laws/DLC/上海地方法规/地方性法规/上海/上海市住房公积金管理若干规定.md", "上海市住房公积金管理若干规定"), Scope::Foreign("上海市".into()));
        assert_eq!(law("lawrefbook_laws/DLC/广东地方法规/地方性法规/广东/广东省失业保险条例(2022-06-01).md", "广东省失业保险条例"), Scope::Home("广东省".into()));
        assert_eq!(law("lawrefbook_laws/DLC/广东地方法规/地方性法规/广东/东莞市文明行为促进条例(2023-02-23).md", "东莞市文明行为促进条例"), Scope::Home("东莞市".into()));
        assert_eq!(law("lawrefbook_laws/DLC/广东地方法规/地方性法规/广东/广州市社会急救医疗管理条例.md", "广州市社会急救医疗管理条例"), Scope::Foreign("广州市".into()));
        assert_eq!(law("lawrefbook_laws/DLC/广东地方法规/地方性法规/广东/深圳经济特区绿色建筑条例.md", "深圳经济特区绿色建筑条例"), Scope::Foreign("深圳市".into()));
        assert!(!law("lawrefbook_laws/DLC/重庆地方法规/地方性法规/重庆/重庆市失业保险条例.md", "重庆市失业保险条例").applies());
    }

    #[test]
    fn scopes_of_source_regions_and_issuers() {
        let home = HomeRegion::new("广东省", "东莞市");
        let p = |v: Value, t: &str| home.scope(&payload(v), t);
        assert_eq!(p(json!({"region": "广州", "issuer": "广州市医疗保障局"}), "广州市医疗保险办法"), Scope::Foreign("广州市".into()));
        assert_eq!(p(json!({"region": "广州", "issuer": "国务院"}), "国务院关于…的通知"), Scope::National, "a national text on a city's portal");
        assert_eq!(p(json!({"region": "广州", "issuer": "广东省人力资源社会保障厅（广州市人民政府门户发布）"}), "关于…的通知"), Scope::Home("广东省".into()));
        assert_eq!(p(json!({"region": "唐山"}), "唐山市工程建设项目审批"), Scope::Foreign("唐山市".into()));
        assert_eq!(p(json!({"region": "北京"}), "社保卡丢了怎么办"), Scope::Foreign("北京市".into()));
        assert_eq!(p(json!({"region": "东莞"}), "东莞市加快推进一网通办2.0"), Scope::Home("东莞市".into()));
        assert_eq!(p(json!({}), "基本养老金领取条件白话版"), Scope::National);
        assert_eq!(p(json!({}), "江苏省企业职工基本养老保险规定"), Scope::Foreign("江苏省".into()));
        assert_eq!(Scope::Foreign("浙江省".into()).reference_note().as_deref(), Some("外地规定（浙江省），仅供参考"));
        assert_eq!(Scope::National.reference_note(), None);
    }
}
