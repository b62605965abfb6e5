//! Personal-data masking for tickets: phone numbers, ID-card numbers, bank cards, plates, e-mail
//! addresses and names where a cue makes them detectable. Masked text is what reaches logs,
//! prompts and the agent console; the original never leaves the request.

use regex::Regex;
use serde::Serialize;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    IdCard,
    BankCard,
    Phone,
    Plate,
    Email,
    Name,
}

impl PiiKind {
    /// The placeholder written in place of the data.
    pub fn placeholder(self) -> &'static str {
        match self {
            PiiKind::IdCard => "[身份证号]",
            PiiKind::BankCard => "[银行卡号]",
            PiiKind::Phone => "[电话]",
            PiiKind::Plate => "[车牌]",
            PiiKind::Email => "[邮箱]",
            PiiKind::Name => "[姓名]",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MaskedSpan {
    pub kind: PiiKind,
    /// Byte range in the normalized text (`Masked::normalized`).
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Masked {
    /// The normalized text with personal data replaced by placeholders.
    pub text: String,
    /// The text the spans point into: normalized first, so full-width digits (１３８…) and
    /// zero-width characters cannot hide a number from the patterns.
    #[serde(skip)]
    pub normalized: String,
    pub spans: Vec<MaskedSpan>,
}

impl Masked {
    pub fn count(&self, kind: PiiKind) -> usize {
        self.spans.iter().filter(|s| s.kind == kind).count()
    }
}

struct Patterns {
    id_card: Regex,
    digits: Regex,
    landline: Regex,
    plate: Regex,
    email: Regex,
    cued_name: Regex,
    titled_name: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| Patterns {
        // 18-digit (last may be X) or legacy 15-digit, not inside a longer digit run.
        id_card: Regex::new(r"[1-9]\d{5}(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[0-9Xx]|[1-9]\d{7}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}").unwrap(),
        // Digit runs (spaces or dashes allowed between groups): phones and bank cards are told apart after.
        digits: Regex::new(r"(?:\+?86[- ]?)?\d(?:[- ]?\d){9,22}").unwrap(),
        landline: Regex::new(r"0\d{2,3}[- ]?\d{7,8}").unwrap(),
        plate: Regex::new(r"[京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼][A-HJ-NP-Z][·•]?(?:[DF][A-HJ-NP-Z0-9]{5}|[A-HJ-NP-Z0-9]{5}[DF]|[A-HJ-NP-Z0-9]{4}[A-HJ-NP-Z0-9挂学警港澳])").unwrap(),
        email: Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}").unwrap(),
        // "我叫张三" / "姓名：李四" / "联系人王五": the 2–3 characters after the cue.
        // ("我是" is not a cue: "我是业主", "我是东城区居民" are far more common than a name after it.)
        cued_name: Regex::new(r"(?:我叫|本人|姓名[:：]?|联系人[:：]?|户主[:：]?|名叫|叫做)\s*([\p{Han}]{2,3})").unwrap(),
        // "王先生" / "李女士" / "张阿姨": a common surname before a title.
        titled_name: Regex::new(r"([王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤][\p{Han}]?)(?:先生|女士|小姐|阿姨|大爷|师傅|老师)").unwrap(),
    })
}

/// Words that follow name cues but are not names ("我是业主", "本人公司").
const NOT_NAMES: &[&str] = &[
    "业主", "市民", "居民", "村民", "家长", "学生", "老师", "职工", "员工", "租户", "住户", "患者", "司机", "一名", "一个",
    "公司", "单位", "小区", "外地", "本地", "退休", "残疾", "个体", "农民", "党员", "孕妇", "老人", "在职", "离职", "失业",
    "想问", "想咨", "咨询", "反映", "投诉", "举报", "今年", "去年", "从事", "某某", "该校", "这里", "这个", "附近",
];

/// No digit right before or after: a match is a whole number, not part of a longer one.
fn digit_bounded(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back().is_some_and(|c| c.is_ascii_digit());
    let after = text[end..].chars().next().is_some_and(|c| c.is_ascii_digit());
    !before && !after
}

fn luhn_ok(digits: &str) -> bool {
    let mut sum = 0;
    for (i, c) in digits.chars().rev().enumerate() {
        let mut d = c.to_digit(10).unwrap_or(0);
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

fn is_mobile(digits: &str) -> bool {
    let d = digits.strip_prefix("86").filter(|r| r.len() == 11).unwrap_or(digits);
    d.len() == 11 && d.starts_with('1') && matches!(d.as_bytes()[1], b'3'..=b'9')
}

/// Mask personal data in the normalized text (see `Masked::normalized`).
pub fn mask_pii(text: &str) -> Masked {
    let normalized = crate::normalize::normalize(text);
    let text = normalized.as_str();
    let p = patterns();
    let mut spans: Vec<MaskedSpan> = Vec::new();
    let taken = |spans: &Vec<MaskedSpan>, s: usize, e: usize| spans.iter().any(|m| s < m.end && m.start < e);
    for m in p.id_card.find_iter(text).filter(|m| digit_bounded(text, m.start(), m.end())) {
        spans.push(MaskedSpan { kind: PiiKind::IdCard, start: m.start(), end: m.end() });
    }
    for m in p.email.find_iter(text) {
        if !taken(&spans, m.start(), m.end()) {
            spans.push(MaskedSpan { kind: PiiKind::Email, start: m.start(), end: m.end() });
        }
    }
    for m in p.digits.find_iter(text) {
        if taken(&spans, m.start(), m.end()) {
            continue;
        }
        let digits: String = m.as_str().chars().filter(char::is_ascii_digit).collect();
        let kind = if is_mobile(&digits) {
            Some(PiiKind::Phone)
        } else if (16..=19).contains(&digits.len()) && luhn_ok(&digits) {
            Some(PiiKind::BankCard)
        } else if (16..=19).contains(&digits.len()) && digits.starts_with('6') {
            // UnionPay cards start with 6; some are not Luhn-valid.
            Some(PiiKind::BankCard)
        } else {
            None
        };
        if let Some(kind) = kind {
            spans.push(MaskedSpan { kind, start: m.start(), end: m.end() });
        }
    }
    for m in p.landline.find_iter(text).filter(|m| digit_bounded(text, m.start(), m.end())) {
        if !taken(&spans, m.start(), m.end()) {
            spans.push(MaskedSpan { kind: PiiKind::Phone, start: m.start(), end: m.end() });
        }
    }
    for m in p.plate.find_iter(text) {
        if !taken(&spans, m.start(), m.end()) {
            spans.push(MaskedSpan { kind: PiiKind::Plate, start: m.start(), end: m.end() });
        }
    }
    for c in p.cued_name.captures_iter(text) {
        let m = c.get(1).expect("group 1");
        let name = m.as_str();
        // Place names ("本人东城区…") are not personal names.
        let place = name.chars().any(|c| "区市县镇乡村街路省州".contains(c));
        if place || NOT_NAMES.iter().any(|w| name.starts_with(w)) || taken(&spans, m.start(), m.end()) {
            continue;
        }
        spans.push(MaskedSpan { kind: PiiKind::Name, start: m.start(), end: m.end() });
    }
    for c in p.titled_name.captures_iter(text) {
        let m = c.get(1).expect("group 1");
        if !taken(&spans, m.start(), m.end()) {
            spans.push(MaskedSpan { kind: PiiKind::Name, start: m.start(), end: m.end() });
        }
    }
    spans.sort_by_key(|s| s.start);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for s in &spans {
        out.push_str(&text[at..s.start]);
        out.push_str(s.kind.placeholder());
        at = s.end;
    }
    out.push_str(&text[at..]);
    Masked { text: out, normalized: normalized.clone(), spans }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(t: &str) -> String {
        mask_pii(t).text
    }

    #[test]
    fn masks_a_table_of_real_looking_formats() {
        let cases = [
            ("我的电话13812345678请回电", "我的电话[电话]请回电"),
            ("电话：138 1234 5678", "电话：[电话]"),
            ("手机+86 139-1234-5678。", "手机[电话]。"),
            ("座机0769-22345678或020 87654321", "座机[电话]或[电话]"),
            ("身份证号440102199003071234，", "身份证号[身份证号]，"),
            ("身份证44190019851231002X", "身份证[身份证号]"),
            ("旧证号440102900307123", "旧证号[身份证号]"),
            ("卡号6222021234567890128已冻结", "卡号[银行卡号]已冻结"),
            ("工资卡 6217 0000 1234 5678 901", "工资卡 [银行卡号]"),
            ("车牌粤S12345被贴条", "车牌[车牌]被贴条"),
            ("新能源车粤SD12345无法充电", "新能源车[车牌]无法充电"),
            ("京A·8K9M2违停", "[车牌]违停"),
            ("邮箱zhang.san@example.com", "邮箱[邮箱]"),
            ("电话１３８１２３４５６７８", "电话[电话]"),
            ("电话138\u{200b}1234\u{200b}5678", "电话[电话]"),
            ("我叫王小明，住在东城", "我叫[姓名]，住在东城"),
            ("联系人：李娜", "联系人：[姓名]"),
            ("物业的张先生说不管", "物业的[姓名]先生说不管"),
        ];
        for (input, want) in cases {
            assert_eq!(masked(input), want, "input: {input}");
        }
    }

    #[test]
    fn leaves_ordinary_numbers_and_words_alone() {
        for t in [
            "2023年5月12日缴费3000元",
            "第十六条规定缴费满15年",
            "我是业主，小区12号楼",
            "我是东城区某小区居民",
            "本人东城区居民",
            "本人公司有职工120人",
            "编号20230512001的工单",
            "拨打12345热线",
        ] {
            assert_eq!(masked(t), t, "changed: {t}");
        }
    }

    #[test]
    fn spans_point_into_the_normalized_text() {
        let m = mask_pii("张女士电话１３９00001111");
        assert_eq!(m.count(PiiKind::Phone), 1);
        assert_eq!(m.count(PiiKind::Name), 1);
        let phone = m.spans.iter().find(|s| s.kind == PiiKind::Phone).unwrap();
        assert_eq!(&m.normalized[phone.start..phone.end], "13900001111");
    }
}
