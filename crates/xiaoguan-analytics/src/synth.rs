//! Synthetic Dongguan-style tickets for tests and benchmarks (deterministic from a seed):
//! towns, estates and roads, matters with their domain and unit, bursts of one matter in one
//! place (the hot issues to find), reporters who write again, agents who change the unit.

use crate::place::DONGGUAN_TOWNS;
use crate::Ticket;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

const SYL: &[&str] = &["鸿", "福", "金", "碧", "翠", "华", "景", "湖", "山", "新", "盛", "嘉", "悦", "荣", "锦", "泰", "丰", "雅", "龙", "凤", "星", "海", "阳", "光"];
const ESTATE_SUFFIX: &[&str] = &["花园", "小区", "新城", "华庭", "山庄", "家园"];
const ROAD_SUFFIX: &[&str] = &["路", "大道", "街"];

/// (matter words, title templates with {p} for the place, text templates, domain, unit).
const MATTERS: &[(&str, &[&str], &[&str], &str, &str)] = &[
    ("噪音", &["{p}夜间施工噪音扰民", "投诉{p}工地噪音太大", "{p}附近施工噪声影响休息"], &["{p}附近工地每天晚上施工到凌晨，噪音很大，老人小孩无法休息，请相关部门处理。", "我住在{p}，旁边工地夜间施工，机器轰鸣，严重扰民。"], "城乡建设", "市住房和城乡建设局"),
    ("油烟", &["{p}餐馆油烟扰民", "{p}临街门面油烟直排", "投诉{p}夜宵摊油烟"], &["{p}楼下几家餐馆油烟直排，窗户都不敢开，投诉多次没有解决。", "{p}临街门面开饭店，没有排烟管道，油烟熏到楼上住户。"], "环境保护", "市生态环境局"),
    ("停车", &["{p}物业乱收停车费", "{p}停车费上涨不合理", "{p}物业强制收取停车费"], &["{p}物业未经业主大会同意上调停车费，业主强烈反对。", "{p}物业强制收取地下停车费，不交不让进，造成拥堵。"], "城乡建设", "市住房和城乡建设局"),
    ("学位", &["{p}学位不足孩子上学难", "{p}配套学校何时建成", "咨询{p}入学学区划分"], &["{p}配套的学校一直没有建成，孩子到了入学年龄，学位不够。", "请问{p}的学区是怎么划分的，孩子明年上小学。"], "教育文体", "市教育局"),
    ("停水", &["{p}经常停水", "{p}自来水水压不足", "{p}停水没有通知"], &["{p}这个月已经停水三次，没有任何通知，生活很不方便。", "{p}高层水压不足，早晚用水高峰没有水。"], "城乡建设", "市水务局"),
    ("违建", &["{p}楼顶违章搭建", "举报{p}违法建设", "{p}私搭乱建无人管"], &["{p}有住户在楼顶违章搭建房屋，存在安全隐患，请执法部门查处。", "{p}一楼住户私自扩建，占用公共绿地。"], "城乡建设", "市城市管理和综合执法局"),
    ("欠薪", &["{p}工厂拖欠工资", "{p}公司欠薪不发", "讨要{p}工地工资"], &["我在{p}附近的工厂上班，老板拖欠三个月工资，请劳动部门帮忙。", "{p}工地包工头拖欠农民工工资，多次讨要无果。"], "劳动和社会保障", "市人力资源和社会保障局"),
    ("社保", &["咨询社保转移", "医保报销比例问题", "养老保险缴费年限咨询"], &["请问在外地缴纳的社保怎么转移到东莞？需要什么材料？", "在东莞住院，医保报销比例是多少，异地就医怎么备案？"], "劳动和社会保障", "市社会保障局"),
    ("公交", &["{p}公交线路太少", "建议{p}增开公交", "{p}公交站点设置不合理"], &["{p}附近只有一条公交线路，上下班高峰等车要半小时，建议增开线路。", "{p}的公交站被取消了，居民出行很不方便。"], "交通运输", "市交通运输局"),
    ("垃圾", &["{p}垃圾清运不及时", "{p}垃圾站臭气熏天", "{p}垃圾乱堆乱放"], &["{p}的垃圾已经好几天没人清运，天气热臭味很大。", "{p}旁边的垃圾中转站臭气熏天，夏天不敢开窗。"], "环境保护", "市城市管理和综合执法局"),
];

/// `n` tickets over one year from 2023-01-02, about a third of them in bursts of one matter
/// in one place (5–60 tickets within a few weeks).
pub fn tickets(n: usize, seed: u64) -> Vec<Ticket> {
    let mut r = Rng(seed ^ 0x5EED);
    let towns: Vec<&str> = DONGGUAN_TOWNS.iter().map(|t| t.0).collect();
    let name = |r: &mut Rng| -> String { format!("{}{}", SYL[r.below(SYL.len())], SYL[r.below(SYL.len())]) };
    // Places: per town, 40 estates and 15 roads.
    let mut places: Vec<(usize, String)> = Vec::new();
    for (ti, _) in towns.iter().enumerate() {
        for k in 0..55 {
            let p = if k < 40 { format!("{}{}", name(&mut r), ESTATE_SUFFIX[r.below(ESTATE_SUFFIX.len())]) } else { format!("{}{}", name(&mut r), ROAD_SUFFIX[r.below(ROAD_SUFFIX.len())]) };
            places.push((ti, p));
        }
    }
    let start = crate::time::parse_time("2023-01-02 08:00:00").unwrap();
    let year_ms = 364 * crate::time::DAY_MS;
    let reporters = (n / 3).max(10);
    let mut out = Vec::with_capacity(n);
    let mut burst: Option<(usize, usize, i64, usize)> = None; // (place, matter, t0, left)
    for i in 0..n {
        let (pi, mi, t) = match burst {
            Some((p, m, t0, left)) if left > 0 => {
                burst = Some((p, m, t0, left - 1));
                (p, m, t0 + r.below(21 * 24) as i64 * 3_600_000)
            }
            _ => {
                let p = r.below(places.len());
                let m = r.below(MATTERS.len());
                let t = start + (r.next() % year_ms as u64) as i64;
                if r.chance(0.02) {
                    burst = Some((p, m, t, 5 + r.below(55)));
                }
                (p, m, t)
            }
        };
        let (ti, place) = &places[pi];
        let (_, titles, texts, domain, unit) = MATTERS[mi];
        let p = if r.chance(0.7) { format!("{}{}", towns[*ti], place) } else { place.clone() };
        let title = titles[r.below(titles.len())].replace("{p}", &p);
        let text = texts[r.below(texts.len())].replace("{p}", &p);
        let reporter = format!("r{}", r.below(reporters));
        let suggested = if r.chance(0.85) { unit.to_string() } else { MATTERS[r.below(MATTERS.len())].4.to_string() };
        let final_unit = if r.chance(0.9) { unit.to_string() } else { suggested.clone() };
        let closed = r.chance(0.7);
        out.push(Ticket {
            id: format!("s{i}"),
            time_ms: t,
            title,
            text,
            reporter: Some(reporter),
            town: Some(towns[*ti].to_string()),
            domain: Some(domain.to_string()),
            unit_changed: final_unit != suggested,
            unit: Some(final_unit),
            suggested_unit: Some(suggested),
            closed,
            closed_at_ms: closed.then_some(t + 3 * crate::time::DAY_MS),
            likes: Some(r.below(4) as u32),
            ..Default::default()
        });
    }
    out.sort_by_key(|t| (t.time_ms, t.id.clone()));
    out
}

/// The tickets as JSONL lines in the loader's default field names.
pub fn to_jsonl(ts: &[Ticket]) -> String {
    let mut s = String::new();
    for t in ts {
        let v = serde_json::json!({
            "id": t.id, "user": t.reporter, "title": t.title, "text": t.text,
            "time": crate::time::format_time(t.time_ms) + ":00", "likes": t.likes, "town": t.town, "domain": t.domain,
            "unit": t.unit, "suggested_unit": t.suggested_unit, "unit_changed": t.unit_changed, "closed": t.closed,
        });
        s.push_str(&v.to_string());
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_shaped() {
        let a = tickets(500, 3);
        assert_eq!(a, tickets(500, 3));
        assert_eq!(a.len(), 500);
        assert!(a.windows(2).all(|w| w[0].time_ms <= w[1].time_ms));
        assert!(a.iter().all(|t| t.town.is_some() && !t.title.is_empty()));
        let jsonl = to_jsonl(&a[..3]);
        assert_eq!(jsonl.lines().count(), 3);
    }
}
