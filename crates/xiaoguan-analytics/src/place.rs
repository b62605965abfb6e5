//! Place extraction from Chinese ticket text: a coarse key (district or county, else town or
//! street) and fine keys (estate, community, village, road, school, park, industrial park,
//! facility).
//!
//! It is a rule scanner, not a gazetteer: a fine place is a name followed by a place suffix
//! (小区, 花园, 苑, 新城, 社区, 村, 路, 大道, 小学, 工业园 …) or a building number (米兰春天G2栋).
//! The name is the run of characters before the suffix, cut at punctuation, at function
//! characters (的, 在, 是, 我 …) and at admin suffixes (市, 区, 县, 镇 …), so
//! "本人系春华镇金鼎村" gives town 春华镇 and village 金鼎村. Dongguan's 35 towns, streets
//! and parks are known by name (南城街道, 长安镇, 松山湖 …), with or without the suffix.
//! The tipdm data is anonymised with district names A1区…A9县, which are read as districts.

use crate::text::is_han;
use serde::{Deserialize, Serialize};

/// Dongguan's towns and streets (镇街) and its parks/new areas: (full name, short name, the
/// short name is safe alone even outside a text that says 东莞).
pub const DONGGUAN_TOWNS: &[(&str, &str, bool)] = &[
    ("莞城街道", "莞城", false),
    ("南城街道", "南城", false),
    ("东城街道", "东城", false),
    ("万江街道", "万江", false),
    ("石碣镇", "石碣", true),
    ("石龙镇", "石龙", false),
    ("茶山镇", "茶山", false),
    ("石排镇", "石排", true),
    ("企石镇", "企石", true),
    ("横沥镇", "横沥", true),
    ("桥头镇", "桥头", false),
    ("谢岗镇", "谢岗", true),
    ("东坑镇", "东坑", true),
    ("常平镇", "常平", true),
    ("寮步镇", "寮步", true),
    ("樟木头镇", "樟木头", true),
    ("大朗镇", "大朗", true),
    ("黄江镇", "黄江", false),
    ("清溪镇", "清溪", false),
    ("塘厦镇", "塘厦", true),
    ("凤岗镇", "凤岗", true),
    ("大岭山镇", "大岭山", true),
    ("长安镇", "长安", false),
    ("虎门镇", "虎门", true),
    ("厚街镇", "厚街", true),
    ("沙田镇", "沙田", false),
    ("道滘镇", "道滘", true),
    ("洪梅镇", "洪梅", true),
    ("麻涌镇", "麻涌", true),
    ("望牛墩镇", "望牛墩", true),
    ("中堂镇", "中堂", false),
    ("高埗镇", "高埗", true),
    ("松山湖", "松山湖", true),
    ("东莞滨海湾新区", "滨海湾", true),
    ("东莞生态园", "生态园", false),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FineKind {
    Estate,
    Community,
    Village,
    School,
    Park,
    Industrial,
    Facility,
    Road,
}

/// One fine place the text names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mention {
    pub kind: FineKind,
    /// As written (after width folding), e.g. "丽发新城小区".
    pub name: String,
    /// The key two mentions of the same place share, e.g. "丽发新城" (generic 小区/社区 dropped).
    pub key: String,
    pub in_title: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Place {
    /// District or county: "A3区", "A7县", "天河区".
    pub district: Option<String>,
    /// Town or street: "春华镇", "西湖街道", "南城街道", "松山湖".
    pub town: Option<String>,
    /// Fine places, most useful first: the title's before the text's, estates and the like
    /// before roads, then in order of appearance.
    pub mentions: Vec<Mention>,
}

impl Place {
    /// The coarse key: the district or county, else the town or street.
    pub fn coarse_key(&self) -> Option<&str> {
        self.district.as_deref().or(self.town.as_deref())
    }
    /// The finest place named (the first mention).
    pub fn fine_key(&self) -> Option<&str> {
        self.mentions.first().map(|m| m.key.as_str())
    }
    pub fn fine_name(&self) -> Option<&str> {
        self.mentions.first().map(|m| m.name.as_str())
    }
    /// Keys used to block candidate pairs: every mention's key and its aliases (a long name's
    /// last four characters, and the part up to an inner estate suffix: 万科魅力之城 → 魅力之城,
    /// 伊景园滨河苑 → 伊景园), at most `max`.
    pub fn block_keys(&self, max: usize) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let push = |k: String, out: &mut Vec<String>| {
            if k.chars().count() >= 2 && !out.contains(&k) {
                out.push(k);
            }
        };
        for m in self.mentions.iter().take(max) {
            push(m.key.clone(), &mut out);
            for a in aliases(&m.key) {
                push(a, &mut out);
            }
        }
        out
    }
    /// "A3区·米兰春天" (coarse · fine), or whichever part is known.
    pub fn label(&self) -> Option<String> {
        match (self.coarse_key(), self.fine_name()) {
            (Some(c), Some(f)) => Some(format!("{c}·{f}")),
            (Some(c), None) => Some(c.to_string()),
            (None, Some(f)) => Some(f.to_string()),
            (None, None) => None,
        }
    }
    /// Two places can be the same: districts agree where both are known, towns too.
    pub fn compatible(&self, other: &Place) -> bool {
        fn agree(a: &Option<String>, b: &Option<String>) -> bool {
            match (a, b) {
                (Some(x), Some(y)) => x == y,
                _ => true,
            }
        }
        agree(&self.district, &other.district) && agree(&self.town, &other.town)
    }
    /// Whether the two name a common fine place (a shared key or alias).
    pub fn shares_fine(&self, other: &Place) -> bool {
        let a = self.block_keys(8);
        let b = other.block_keys(8);
        a.iter().any(|k| b.contains(k))
    }
    /// The strings to take out of the text before comparing matters.
    pub fn surface_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.mentions.iter().map(|m| m.name.clone()).collect();
        v.extend(self.district.clone());
        v.extend(self.town.clone());
        v
    }
    pub fn is_empty(&self) -> bool {
        self.district.is_none() && self.town.is_none() && self.mentions.is_empty()
    }
}

fn aliases(key: &str) -> Vec<String> {
    let c: Vec<char> = key.chars().collect();
    let mut out = Vec::new();
    if c.len() >= 5 && !c.iter().any(|c| c.is_ascii_digit()) {
        out.push(c[c.len() - 4..].iter().collect());
    }
    for (i, ch) in c.iter().enumerate() {
        if i >= 2 && i + 2 < c.len() && matches!(ch, '园' | '苑' | '城' | '府') {
            out.push(c[..=i].iter().collect());
            break;
        }
    }
    out
}

/// Place of a ticket: the title first, then the text.
pub fn extract(title: &str, text: &str) -> Place {
    let t = fold(title);
    let b = fold(text);
    let dongguan = t.contains("东莞") || b.contains("东莞");
    let mut p = Place::default();
    let mut mentions = Vec::new();
    for (s, in_title) in [(&t, true), (&b, false)] {
        let chars: Vec<char> = s.chars().collect();
        if p.district.is_none() {
            p.district = find_district(&chars);
        }
        if p.town.is_none() {
            p.town = find_town(s, &chars, dongguan || find_dongguan_full(s).is_some());
        }
        scan_fine(&chars, in_title, &mut mentions);
    }
    // Dedupe by key (first kept), then order: title before text, estate-like before road.
    let mut seen = std::collections::HashSet::new();
    mentions.retain(|m: &Mention| seen.insert(m.key.clone()));
    // A road whose name is also the start of a later fine name (联丰路 vs 联丰路小学) stays.
    let mut idx: Vec<(usize, Mention)> = mentions.into_iter().enumerate().collect();
    idx.sort_by_key(|(i, m)| (!m.in_title, m.kind == FineKind::Road, *i));
    p.mentions = idx.into_iter().map(|(_, m)| m).collect();
    // A town that the scanner also took for a fine place is not a fine place.
    if let Some(town) = &p.town {
        p.mentions.retain(|m| &m.name != town);
    }
    p
}

/// A place label as [`Place::label`] writes it ("A3区·米兰春天", "南城街道·鸿福路", "南城街道"):
/// the part before '·' is the district or town, the part after the fine place. A label
/// with no '·' is read as text.
pub fn from_label(label: &str) -> Place {
    let label = label.trim();
    let Some((coarse, fine)) = label.split_once('·') else {
        let p = extract(label, "");
        return if p.is_empty() && !label.is_empty() { Place { town: Some(label.to_string()), ..Default::default() } } else { p };
    };
    let c = extract(coarse, "");
    let mut p = Place { district: c.district.clone(), town: c.town.clone(), mentions: Vec::new() };
    if p.district.is_none() && p.town.is_none() && !coarse.is_empty() {
        p.town = Some(coarse.to_string());
    }
    let fine = fine.trim();
    if fine.chars().count() >= 2 {
        let found = extract(fine, "");
        let m = found.mentions.into_iter().find(|m| m.name == fine).unwrap_or_else(|| Mention {
            kind: FineKind::Estate,
            name: fine.to_string(),
            key: strip_generic_tail(fine),
            in_title: true,
        });
        p.mentions.push(Mention { in_title: true, ..m });
    }
    p
}

/// Place of a single text.
pub fn extract_text(s: &str) -> Place {
    extract("", s)
}

/// Full-width → half-width (case kept), and the separators inside names dropped
/// (伊景园·滨河苑 → 伊景园滨河苑).
fn fold(s: &str) -> String {
    let c: Vec<char> = s
        .chars()
        .map(|c| match c {
            '\u{3000}' => ' ',
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{200B}' | '\u{FEFF}' => ' ',
            _ => c,
        })
        .collect();
    let mut out = String::with_capacity(s.len());
    for (i, &ch) in c.iter().enumerate() {
        if matches!(ch, '·' | '.' | '•' | '・') && i > 0 && i + 1 < c.len() && is_han(c[i - 1]) && is_han(c[i + 1]) {
            continue;
        }
        out.push(ch);
    }
    out
}

fn find_district(c: &[char]) -> Option<String> {
    // A1区 … A99县 (the tipdm anonymisation).
    for i in 0..c.len() {
        if c[i] == 'A' && (i == 0 || !c[i - 1].is_ascii_alphanumeric()) {
            let mut j = i + 1;
            while j < c.len() && c[j].is_ascii_digit() && j - i <= 2 {
                j += 1;
            }
            if j > i + 1 && j < c.len() && matches!(c[j], '区' | '县') {
                return Some(c[i..=j].iter().collect());
            }
        }
    }
    // X市YY区 / X市YY县.
    for i in 0..c.len() {
        if c[i] == '市' && i + 3 < c.len() && is_han(c[i + 1]) && is_han(c[i + 2]) && matches!(c[i + 3], '区' | '县') {
            let name: String = c[i + 1..=i + 3].iter().collect();
            if !matches!(c[i + 2], '小' | '社' | '园' | '校' | '城' | '景' | '片' | '新' | '厂' | '辖' | '市' | '郊' | '山' | '老' | '街' | '宅' | '发' | '业' | '民' | '港' | '湾')
                && !STOP.contains(&c[i + 1])
            {
                return Some(name);
            }
        }
    }
    None
}

fn find_dongguan_full(s: &str) -> Option<&'static str> {
    DONGGUAN_TOWNS.iter().filter_map(|(full, _, _)| s.find(full).map(|p| (p, *full))).min().map(|x| x.1)
}

fn find_town(s: &str, c: &[char], dongguan: bool) -> Option<String> {
    if let Some(full) = find_dongguan_full(s) {
        return Some(full.to_string());
    }
    // Short Dongguan names: the safe ones anywhere, the others only in a Dongguan text.
    let mut best: Option<(usize, &str)> = None;
    for (full, short, safe) in DONGGUAN_TOWNS {
        if !(*safe || dongguan) {
            continue;
        }
        if let Some(p) = s.find(short) {
            if best.is_none_or(|(b, _)| p < b) {
                best = Some((p, full));
            }
        }
    }
    if let Some((_, full)) = best {
        return Some(full.to_string());
    }
    // Any other town or street: name + 街道 / 镇 / 乡.
    let mut i = 0;
    while i < c.len() {
        let (suffix_len, max) = if c[i] == '街' && c.get(i + 1) == Some(&'道') {
            (2, 4)
        } else if c[i] == '镇' || c[i] == '乡' {
            (1, 3)
        } else {
            i += 1;
            continue;
        };
        let next = c.get(i + suffix_len).copied();
        let bad_next = c[i] == '乡' && matches!(next, Some('村' | '镇' | '下' | '亲' | '愁' | '土' | '音' | '里'));
        if !bad_next {
            if let Some(name) = name_before(c, i, max, &[]) {
                let last = *name.last().unwrap();
                let bad = match c[i] {
                    '镇' => matches!(last, '城' | '乡' | '村' | '集' | '市' | '坐' | '重' | '古' | '小'),
                    '乡' => matches!(last, '城' | '下' | '回' | '家' | '老' | '故' | '异' | '同' | '返' | '思' | '他' | '外' | '本' | '水' | '镇'),
                    _ => false,
                };
                if !bad && !GENERIC.contains(&name.iter().collect::<String>().as_str()) {
                    let mut s: String = name.iter().collect();
                    s.extend(&c[i..i + suffix_len]);
                    return Some(s);
                }
            }
        }
        i += suffix_len;
    }
    None
}

/// Function characters that never belong to a place name.
const STOP: &[char] = &[
    '的', '在', '是', '于', '我', '你', '他', '她', '们', '了', '和', '与', '及', '或', '对', '到', '从', '把', '被', '给', '位', '住', '个', '该',
    '这', '那', '本', '系', '近', '旁', '边', '附', '其', '有', '为', '将', '就', '也', '都', '还', '又', '很', '最', '更', '让', '使', '请',
    '称', '叫', '说', '属', '由', '即', '等', '市', '省', '区', '县', '镇', '乡', '处', '啊', '吗', '呢', '吧', '去', '来', '要', '想', '能', '会',
    '且', '而', '但', '却', '因', '所', '以', '可', '此', '每', '各',
];

/// Words that start a clause and so are cut from the front of a name.
const LEAD_WORDS: &[&str] = &["再加上", "例如", "比如", "包括", "划入", "划到", "宣传", "有关", "以及", "还有", "靠近", "紧邻", "毗邻", "距离", "对于", "针对", "当初", "属于", "搬到", "搬进", "买了", "地处", "坐落", "座落", "反应", "关", "条", "离", "至", "据", "距", "原", "于", "在", "反映", "投诉", "咨询", "建议", "关于", "举报", "请问", "位于", "经过", "希望", "要求", "请求", "恳请", "强烈", "严重", "居住", "住在", "来自", "购买", "入住", "原来", "目前", "现在", "之前", "一直", "多次", "多年", "长期", "整治", "解决", "处理", "问题", "情况"];

/// Names that are words, not places.
const GENERIC: &[&str] = &[
    "这个", "那个", "我们", "你们", "他们", "整个", "周边", "附近", "周围", "老旧", "居民", "各个", "多个", "所在", "一个", "其他", "其它", "商品房",
    "安置", "城市", "农村", "高档", "住宅", "自己", "同一", "隔壁", "对面", "每个", "几个", "两个", "相关", "部分", "临近", "本地", "当地", "公共",
    "所有", "别的", "开放式", "封闭式", "老", "新", "城中", "新农", "美丽乡", "全市", "全省", "全县", "全区", "步行", "大型", "小型", "中型", "普通",
    "私立", "公立", "民办", "公办", "重点", "一所", "这所", "该所", "主干", "城乡", "乡镇", "街道", "社区", "小区", "学校", "公园", "医院", "市场",
    "人民政", "国际", "新建", "在建", "无证", "违建", "老小", "回迁", "拆迁", "安置房", "保障房", "廉租", "公租", "商住", "高层", "别墅", "沿街", "临街",
    "农贸", "菜", "机动车", "非机动车", "停车", "小学", "中学", "初中", "高中", "大学", "幼儿", "物业", "业主", "开发商", "一期", "二期", "三期", "万人",
];

/// The name run before position `end` (exclusive): word characters, cut at punctuation,
/// function characters and the characters in `cut`; at most `max` characters (the nearest).
/// None when shorter than two characters.
fn name_before(c: &[char], end: usize, max: usize, cut: &[char]) -> Option<Vec<char>> {
    let mut start = end;
    while start > 0 {
        let ch = c[start - 1];
        if !(is_han(ch) || ch.is_ascii_alphanumeric()) || STOP.contains(&ch) || cut.contains(&ch) {
            break;
        }
        if end - start >= max {
            break;
        }
        start -= 1;
    }
    let name = &c[start..end];
    // Leading digits and ASCII are kept only inside a name (五矿万境K9), not at its start.
    let lead = name.iter().take_while(|c| c.is_ascii_alphanumeric()).count();
    let mut name = &name[lead..];
    // Leading verbs of a sentence are not part of the name (反映丽发新城 → 丽发新城).
    for p in LEAD_WORDS {
        let pc: Vec<char> = p.chars().collect();
        if name.len() >= pc.len() + 2 && name[..pc.len()] == pc[..] {
            name = &name[pc.len()..];
            break;
        }
    }
    let han = name.iter().filter(|c| is_han(**c)).count();
    if name.len() < 2 || han < 2 {
        return None;
    }
    Some(name.to_vec())
}

struct Suffix {
    s: &'static str,
    kind: FineKind,
    /// Dropped from the key (小区 is generic: 丽发新城小区 and 丽发新城 are one place).
    generic: bool,
    max: usize,
}

const fn sfx(s: &'static str, kind: FineKind, generic: bool, max: usize) -> Suffix {
    Suffix { s, kind, generic, max }
}

/// Longest first where one suffix ends another.
const SUFFIXES: &[Suffix] = &[
    sfx("工业园区", FineKind::Industrial, false, 6),
    sfx("工业园", FineKind::Industrial, false, 6),
    sfx("工业区", FineKind::Industrial, false, 6),
    sfx("产业园", FineKind::Industrial, false, 6),
    sfx("科技园", FineKind::Industrial, false, 6),
    sfx("居委会", FineKind::Community, true, 5),
    sfx("村委会", FineKind::Village, false, 3),
    sfx("幼儿园", FineKind::School, false, 6),
    sfx("地铁站", FineKind::Facility, false, 5),
    sfx("高铁站", FineKind::Facility, false, 5),
    sfx("菜市场", FineKind::Facility, false, 5),
    sfx("小区", FineKind::Estate, true, 8),
    sfx("社区", FineKind::Community, true, 5),
    sfx("花园", FineKind::Estate, false, 6),
    sfx("花苑", FineKind::Estate, false, 6),
    sfx("家园", FineKind::Estate, false, 6),
    sfx("山庄", FineKind::Estate, false, 6),
    sfx("公馆", FineKind::Estate, false, 6),
    sfx("公寓", FineKind::Estate, false, 6),
    sfx("新城", FineKind::Estate, false, 6),
    sfx("新村", FineKind::Estate, false, 6),
    sfx("华庭", FineKind::Estate, false, 6),
    sfx("华府", FineKind::Estate, false, 6),
    sfx("大厦", FineKind::Estate, false, 6),
    sfx("广场", FineKind::Facility, false, 6),
    sfx("小学", FineKind::School, false, 6),
    sfx("中学", FineKind::School, false, 6),
    sfx("学校", FineKind::School, false, 6),
    sfx("大学", FineKind::School, false, 6),
    sfx("学院", FineKind::School, false, 6),
    sfx("公园", FineKind::Park, false, 5),
    sfx("医院", FineKind::Facility, false, 6),
    sfx("市场", FineKind::Facility, false, 5),
    sfx("商场", FineKind::Facility, false, 5),
    sfx("车站", FineKind::Facility, false, 5),
    sfx("大道", FineKind::Road, false, 4),
    sfx("大街", FineKind::Road, false, 4),
    sfx("村", FineKind::Village, false, 3),
    sfx("路", FineKind::Road, false, 4),
    sfx("街", FineKind::Road, false, 4),
    sfx("巷", FineKind::Road, false, 4),
    sfx("苑", FineKind::Estate, false, 6),
    sfx("园", FineKind::Estate, false, 6),
    sfx("庭", FineKind::Estate, false, 6),
    sfx("府", FineKind::Estate, false, 6),
    sfx("郡", FineKind::Estate, false, 6),
    sfx("湾", FineKind::Estate, false, 6),
    sfx("城", FineKind::Estate, false, 6),
];

/// Whole words ending in a suffix that are not places.
const NOT_PLACES: &[&str] = &[
    "政府", "学府", "王府", "城府", "首府", "官府", "校园", "田园", "菜园", "果园", "陵园", "墓园", "动物园", "植物园", "游乐园", "乐园", "庄园", "台湾",
    "海湾", "港湾", "县城", "省城", "进城", "全城", "满城", "古城", "商城", "新城", "花园", "家园", "公园", "广场", "市场", "医院", "学校", "小学",
    "中学", "大学", "学院", "社区", "小区", "步行街", "美丽乡村", "城中村", "农村", "山村", "渔村", "全村", "本村", "该村", "各村", "同村", "邻村",
    "进村", "回村", "下村", "出村", "一村", "两村", "村村", "新农村", "乡村", "马路", "道路", "公路", "铁路", "修路", "走路", "出路", "思路", "线路",
    "网路", "电路", "水路", "小路", "大路", "沿路", "进路", "过路", "拦路", "堵路", "占路", "门路", "套路", "上路", "让路", "带路", "开路", "绕路",
    "问路", "找路", "领路", "迷路", "退路", "活路", "生路", "销路", "来路", "去路", "回路", "同路", "上街", "逛街", "沿街", "临街", "满街", "老街",
    "商业街", "美食街", "小巷", "街巷", "大街", "人民政府", "居民区", "住宅区", "幼儿园", "车站", "地铁站", "商场", "菜市场", "工业园", "工业区",
];

fn scan_fine(c: &[char], in_title: bool, out: &mut Vec<Mention>) {
    let mut i = 0;
    while i < c.len() {
        let mut matched = false;
        for sf in SUFFIXES {
            let Some(sl_len) = matches_at(c, i, sf.s) else { continue };
            let next = c.get(i + sl_len).copied();
            if !suffix_ok(sf, next) {
                continue;
            }
            // A road name is cut at admin chars only; any other name also at a road suffix,
            // unless that leaves too little (五一路小学 keeps its road).
            let cut: &[char] = if sf.kind == FineKind::Road { &[] } else { &['路', '街', '道', '巷'] };
            let name = name_before(c, i, sf.max, cut).or_else(|| name_before(c, i, sf.max, &[]));
            if let Some(name) = name {
                let name_s: String = name.iter().collect();
                let full = format!("{name_s}{}", sf.s);
                if valid(&name_s, &full, sf) {
                    let key = if sf.generic { name_s.clone() } else if sf.s == "村委会" { format!("{name_s}村") } else { full.clone() };
                    let key = strip_generic_tail(&key);
                    if key.chars().count() >= 2 {
                        out.push(Mention { kind: sf.kind, name: full, key, in_title });
                    }
                }
            }
            i += sl_len;
            matched = true;
            break;
        }
        if matched {
            continue;
        }
        // A building number after a name with no suffix: 米兰春天G2栋, 科教新村4区10栋.
        if c[i].is_ascii_alphanumeric() && (i == 0 || is_han(c[i - 1])) {
            let mut j = i;
            while j < c.len() && c[j].is_ascii_alphanumeric() {
                j += 1;
            }
            let building = c.get(j).is_some_and(|&x| matches!(x, '栋' | '幢' | '座'))
                || (c.get(j) == Some(&'号') && c.get(j + 1) == Some(&'楼'))
                || (c.get(j) == Some(&'期') && c[i..j].iter().all(|d| d.is_ascii_digit()));
            if building {
                if let Some(name) = name_before(c, i, 6, &['路', '街', '道', '巷']) {
                    let name_s: String = name.iter().collect();
                    let key = strip_generic_tail(&name_s);
                    if !GENERIC.contains(&key.as_str()) && key.chars().count() >= 2 && !out.iter().any(|m| m.key == key) {
                        out.push(Mention { kind: FineKind::Estate, name: name_s, key, in_title });
                    }
                }
            }
            i = j;
            continue;
        }
        i += 1;
    }
}

/// The length in chars of `s` when it occurs at `c[i..]`.
fn matches_at(c: &[char], i: usize, s: &str) -> Option<usize> {
    let mut k = 0;
    for ch in s.chars() {
        if c.get(i + k) != Some(&ch) {
            return None;
        }
        k += 1;
    }
    Some(k)
}

fn suffix_ok(sf: &Suffix, next: Option<char>) -> bool {
    let n = match next {
        Some(n) => n,
        None => return true,
    };
    match sf.s {
        "街" => !matches!(n, '道' | '办' | '坊' | '区'),
        "城" => !matches!(n, '市' | '区' | '管' | '乡' | '镇' | '中' | '际' | '建' | '投'),
        "园" => !matches!(n, '区' | '林' | '艺' | '丁'),
        "村" => !matches!(n, '民' | '委' | '里' | '庄' | '级' | '组' | '干' | '口' | '落' | '道' | '头' | '屯' | '寨' | '镇' | '务' | '集' | '小' | '两'),
        "府" => !matches!(n, '办' | '部'),
        "路" => !matches!(n, '灯' | '面' | '况' | '过' | '上' | '边' | '人' | '费' | '由' | '线' | '径' | '牌' | '网' | '基' | '肩'),
        "湾" => !matches!(n, '区'),
        "庭" => !matches!(n, '院' | '审' | '长'),
        "市场" => !matches!(n, '监' | '管' | '价' | '主' | '经' | '化' | '准'),
        "学院" | "大学" => !matches!(n, '生'),
        _ => true,
    }
}

fn valid(name: &str, full: &str, sf: &Suffix) -> bool {
    if NOT_PLACES.contains(&full) || GENERIC.contains(&name) {
        return false;
    }
    let last = name.chars().last().unwrap_or(' ');
    // A name cannot end in a function character, nor be made of digits and one character.
    if STOP.contains(&last) {
        return false;
    }
    let han = name.chars().filter(|c| is_han(*c)).count();
    if han < 2 {
        return false;
    }
    match sf.kind {
        FineKind::Road => !matches!(last, '马' | '道' | '公' | '铁' | '修' | '走' | '出' | '思' | '线' | '网' | '电' | '水' | '沿' | '进' | '堵' | '占' | '门' | '套' | '让' | '带' | '绕' | '迷' | '退' | '活' | '生' | '销' | '条' | '段' | '行' | '断' | '封' | '跑' | '半' | '前' | '后'),
        FineKind::Village => !matches!(last, '农' | '乡' | '山' | '渔' | '全' | '同' | '进' | '回' | '邻' | '城' | '中'),
        _ => {
            // Single-character estate suffixes are weak: ask for a real name before them.
            if sf.s.chars().count() == 1 && han < 2 {
                return false;
            }
            !full.ends_with("政府") && !name.ends_with("人民")
        }
    }
}

fn strip_generic_tail(key: &str) -> String {
    let mut k = key.to_string();
    // Phases of one estate are one place: 绿地海外滩二期 → 绿地海外滩.
    for ph in ["一期", "二期", "三期", "四期", "五期", "1期", "2期", "3期", "4期"] {
        if let Some(pos) = k.find(ph) {
            if k[..pos].chars().count() >= 2 {
                k.truncate(pos);
                break;
            }
        }
    }
    for t in ["小区", "社区", "居委会"] {
        if k.ends_with(t) && k.chars().count() > t.chars().count() + 1 {
            k.truncate(k.len() - t.len());
        }
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(p: &Place) -> Vec<&str> {
        p.mentions.iter().map(|m| m.key.as_str()).collect()
    }

    #[test]
    fn tipdm_estate_with_building_number_and_road() {
        let p = extract("A3区一米阳光婚纱艺术摄影是否合法纳税了？", "座落在A市A3区联丰路米兰春天G2栋320，一家名叫一米阳光婚纱艺术摄影的影楼");
        assert_eq!(p.district.as_deref(), Some("A3区"));
        assert!(keys(&p).contains(&"米兰春天"), "{p:?}");
        assert!(keys(&p).contains(&"联丰路"), "{p:?}");
        // The estate comes before the road.
        assert_eq!(p.fine_key(), Some("米兰春天"));
        assert_eq!(p.label().as_deref(), Some("A3区·米兰春天"));
    }

    #[test]
    fn county_town_village() {
        let p = extract("反映A7县春华镇金鼎村水泥路、自来水到户的问题", "本人系春华镇金鼎村七里组村民");
        assert_eq!(p.district.as_deref(), Some("A7县"));
        assert_eq!(p.town.as_deref(), Some("春华镇"));
        assert_eq!(p.fine_key(), Some("金鼎村"));
    }

    #[test]
    fn streets_and_estates_of_one_place_share_a_key() {
        let a = extract("A2区丽发新城附近修建搅拌站", "我是暮云街道丽发新城小区的业主");
        let b = extract("丽发新城小区旁边建搅拌站", "");
        assert_eq!(a.town.as_deref(), Some("暮云街道"));
        assert_eq!(a.fine_key(), Some("丽发新城"));
        assert_eq!(b.fine_key(), Some("丽发新城"));
        assert!(a.shares_fine(&b) && a.compatible(&b));
        let c = extract("A5区丽发新城", "");
        assert!(!a.compatible(&c));
    }

    #[test]
    fn separators_and_aliases() {
        let a = extract("投诉A市伊景园.滨河苑开发商", "");
        let b = extract("不需要车位", "我们是还没住进武广新城片区的伊景园的业主");
        assert!(keys(&a).contains(&"伊景园滨河苑"), "{a:?}");
        assert!(a.shares_fine(&b), "{a:?} {b:?}");
        let c = extract("万科魅力之城小区底层门店深夜经营", "");
        let d = extract("A5区劳动东路魅力之城小区油烟扰民", "");
        assert!(c.shares_fine(&d), "{c:?} {d:?}");
        assert_eq!(d.fine_key(), Some("魅力之城"));
    }

    #[test]
    fn schools_and_roads() {
        let p = extract("A市A2区向家坡小学何时能真正建成？", "");
        assert_eq!(p.fine_key(), Some("向家坡小学"));
        let p = extract("A7县小塘路紫云阁丰润生活超市门口两个音响声音超级大", "");
        assert_eq!(p.fine_key(), Some("小塘路"));
        let p = extract("建议在A2区中信广场地铁站建一个公益停车坪", "");
        assert!(keys(&p).iter().any(|k| k.contains("中信")), "{p:?}");
    }

    #[test]
    fn labels_read_back() {
        let p = extract("A3区一米阳光婚纱艺术摄影", "座落在A市A3区联丰路米兰春天G2栋320");
        let back = from_label(&p.label().unwrap());
        assert_eq!(back.district.as_deref(), Some("A3区"));
        assert_eq!(back.fine_key(), Some("米兰春天"));
        let d = from_label("南城街道·鸿福社区");
        assert_eq!((d.town.as_deref(), d.fine_key()), (Some("南城街道"), Some("鸿福")));
        assert_eq!(from_label("长安镇").town.as_deref(), Some("长安镇"));
    }

    #[test]
    fn words_that_look_like_places_are_not() {
        for s in ["请政府尽快修路", "马路上到处是垃圾", "小区物业不作为", "我们小区的停车问题", "城市管理执法局", "乡村振兴", "县城的学校", "市场监管局"] {
            let p = extract(s, "");
            assert!(p.mentions.is_empty(), "{s}: {p:?}");
        }
    }

    #[test]
    fn dongguan_towns_streets_and_communities() {
        let p = extract("南城街道鸿福社区宏伟路噪音扰民", "");
        assert_eq!(p.town.as_deref(), Some("南城街道"));
        assert_eq!(p.coarse_key(), Some("南城街道"));
        assert_eq!(p.fine_key(), Some("鸿福"));
        let p = extract("", "长安镇乌沙社区兴发南路工业园附近的工厂夜间排放废气");
        assert_eq!(p.town.as_deref(), Some("长安镇"));
        assert_eq!(p.fine_key(), Some("乌沙"));
        let p = extract("虎门太平社区路灯不亮", "");
        assert_eq!(p.town.as_deref(), Some("虎门镇"));
        let p = extract("松山湖大学路一号的公交站太少", "");
        assert_eq!(p.town.as_deref(), Some("松山湖"));
        let p = extract("塘厦镇林村社区168工业园占道经营", "");
        assert_eq!(p.town.as_deref(), Some("塘厦镇"));
        assert!(keys(&p).contains(&"林村"), "{p:?}");
        // 南城 alone is a Dongguan street only when the text is about 东莞.
        assert_eq!(extract("城南 南城的问题", "").town, None);
        assert_eq!(extract("东莞南城的一条路", "").town.as_deref(), Some("南城街道"));
        let p = extract("东城街道主山社区旁边的东城中学门口拥堵", "");
        assert!(keys(&p).contains(&"东城中学"), "{p:?}");
    }
}
