//! Hot issues (热点问题): tickets about the same matter in the same place within a time
//! window, grouped, named, ranked.
//!
//! Grouping: candidate pairs come from blocks (a shared fine place, or a shared distinctive
//! title bigram for tickets whose title names no fine place), at most `window_days` apart;
//! a pair is a link when its similarity plus `fine_place_bonus` (same fine place; minus
//! `no_place_malus` when they share none) reaches `group_edge` and the places are compatible. Links are taken strongest first, and two
//! groups merge only when their centroids are at least `group_merge` alike (centroid linkage
//! on the candidate graph: a chain of weak links cannot glue two matters together).
//!
//! Hot score (documented, and in each issue's `score`):
//!
//! ```text
//! score = R + 0.3·(N − R) + ln(1 + L) + 0.5·ln(1 + D)
//! ```
//!
//! with N tickets, R distinct reporters (a ticket with no reporter counts as its own), L the
//! likes summed, D the days from first to last ticket. Distinct people count most; the same
//! person writing again counts a little; support (likes) and persistence count on a log
//! scale, so 2,000 likes weigh like ~8 more reporters and a matter open for a month like ~2.

use crate::similarity::Centroid;
use crate::text;
use crate::time::{format_date, iso_week, DAY_MS};
use crate::{Config, Corpus};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

#[derive(Debug, Clone, Serialize)]
pub struct GroupTicket {
    pub id: String,
    pub time: String,
    pub title: String,
    pub reporter: Option<String>,
    pub likes: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct HotIssue {
    pub rank: usize,
    /// "A2区·丽发新城小区 / 搅拌站（噪音扰民）".
    pub name: String,
    pub place: Option<String>,
    pub matter: String,
    pub score: f64,
    pub tickets: usize,
    pub reporters: usize,
    pub likes: u64,
    pub first: String,
    pub last: String,
    pub span_days: f64,
    /// ISO week → tickets.
    pub weeks: BTreeMap<String, usize>,
    /// Mean similarity of the members to the group's centroid.
    pub coherence: f32,
    pub members: Vec<GroupTicket>,
    /// Indexes into the analysed ticket slice (same order as `members`).
    #[serde(skip)]
    pub indexes: Vec<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HotReport {
    pub tickets: usize,
    /// Tickets in some group of at least `min_group`.
    pub grouped_tickets: usize,
    /// Every group of at least `min_group`, hottest first.
    pub groups: Vec<HotIssue>,
    pub candidate_pairs: u64,
    pub links: usize,
}

/// The groups (member indexes, each sorted by time) of tickets about one matter in one place.
/// Singletons included.
pub fn group(corpus: &Corpus, cfg: &Config) -> (Vec<Vec<usize>>, u64, usize) {
    let th = corpus.thresholds(cfg);
    let window = (cfg.window_days * DAY_MS as f64) as i64;
    let mut edges: Vec<(f32, u32, u32)> = Vec::new();
    let mut seen: HashSet<(u32, u32)> = HashSet::new();
    let mut pairs = 0u64;
    corpus.candidate_pairs(window, cfg.max_neighbors, false, |i, j| {
        pairs += 1;
        let (a, b) = if i < j { (i as u32, j as u32) } else { (j as u32, i as u32) };
        if seen.contains(&(a, b)) || !corpus.place_compatible(i, j) {
            return;
        }
        let s = corpus.sim(i, j);
        let bonus = if corpus.shares_fine(i, j) { th.fine_place_bonus } else { -th.no_place_malus };
        if s + bonus >= th.group_edge {
            seen.insert((a, b));
            edges.push((s + bonus, a, b));
        }
    });
    edges.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    let n = corpus.len();
    let mut parent: Vec<usize> = (0..n).collect();
    let mut size = vec![1usize; n];
    let mut cent: Vec<Option<Centroid>> = (0..n).map(|i| Some(corpus.centroid(i))).collect();
    fn find(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    let links = edges.len();
    // Each group's district and town (where any member names one): a merge may not give a
    // group two districts or two towns, whatever the linking pair says.
    let mut area: Vec<(Option<&str>, Option<&str>)> = corpus.places.iter().map(|p| (p.district.as_deref(), p.town.as_deref())).collect();
    let agree = |x: Option<&str>, y: Option<&str>| x.is_none() || y.is_none() || x == y;
    for &(_, a, b) in &edges {
        let (ra, rb) = (find(&mut parent, a as usize), find(&mut parent, b as usize));
        if ra == rb {
            continue;
        }
        if !agree(area[ra].0, area[rb].0) || !agree(area[ra].1, area[rb].1) {
            continue;
        }
        let ok = {
            let (ca, cb) = (cent[ra].as_ref().unwrap(), cent[rb].as_ref().unwrap());
            size[ra] + size[rb] == 2 || ca.cosine(cb) >= th.group_merge
        };
        if !ok {
            continue;
        }
        let (big, small) = if size[ra] >= size[rb] { (ra, rb) } else { (rb, ra) };
        let c = cent[small].take().unwrap();
        cent[big].as_mut().unwrap().absorb(c);
        parent[small] = big;
        size[big] += size[small];
        area[big] = (area[big].0.or(area[small].0), area[big].1.or(area[small].1));
    }
    let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
    for i in 0..n {
        let r = find(&mut parent, i);
        groups.entry(r).or_default().push(i);
    }
    let mut out: Vec<Vec<usize>> = groups.into_values().collect();
    for g in &mut out {
        g.sort_by_key(|&i| (corpus.tickets[i].time_ms, i));
    }
    out.sort_by_key(|g| g[0]);
    (out, pairs, links)
}

/// The hot score of a group (see the module docs).
pub fn hot_score(tickets: usize, reporters: usize, likes: u64, span_days: f64) -> f64 {
    reporters as f64 + 0.3 * (tickets - reporters.min(tickets)) as f64 + (1.0 + likes as f64).ln() + 0.5 * (1.0 + span_days.max(0.0)).ln()
}

pub fn hot_issues(corpus: &Corpus, cfg: &Config) -> HotReport {
    let (groups, pairs, links) = group(corpus, cfg);
    let mut issues: Vec<HotIssue> = groups.into_iter().filter(|g| g.len() >= cfg.min_group.max(1)).map(|g| describe(corpus, g)).collect();
    issues.sort_by(|a, b| b.score.total_cmp(&a.score).then(b.tickets.cmp(&a.tickets)).then(a.indexes[0].cmp(&b.indexes[0])));
    for (r, i) in issues.iter_mut().enumerate() {
        i.rank = r + 1;
    }
    let grouped = issues.iter().map(|i| i.tickets).sum();
    HotReport { tickets: corpus.len(), grouped_tickets: grouped, groups: issues, candidate_pairs: pairs, links }
}

fn describe(corpus: &Corpus, g: Vec<usize>) -> HotIssue {
    let ts = corpus.tickets;
    let n = g.len();
    let mut reporters = HashSet::new();
    let mut anonymous = 0;
    for &i in &g {
        match ts[i].reporter.as_deref().filter(|r| !r.is_empty()) {
            Some(r) => {
                reporters.insert(r);
            }
            None => anonymous += 1,
        }
    }
    let r = reporters.len() + anonymous;
    let likes: u64 = g.iter().map(|&i| ts[i].likes.unwrap_or(0) as u64).sum();
    let first = ts[g[0]].time_ms;
    let last = ts[*g.last().unwrap()].time_ms;
    let span = (last - first) as f64 / DAY_MS as f64;
    let mut weeks = BTreeMap::new();
    for &i in &g {
        *weeks.entry(iso_week(ts[i].time_ms)).or_insert(0) += 1;
    }
    let mut c = corpus.centroid(g[0]);
    for &i in &g[1..] {
        c.absorb(corpus.centroid(i));
    }
    let coherence = g.iter().map(|&i| c.cosine(&corpus.centroid(i))).sum::<f32>() / n as f32;
    let place = group_place(corpus, &g);
    let matter = group_matter(corpus, &g);
    let name = format!("{} / {}", place.as_deref().unwrap_or("（未注明地点）"), matter);
    HotIssue {
        rank: 0,
        name,
        place,
        matter,
        score: (hot_score(n, r, likes, span) * 1000.0).round() / 1000.0,
        tickets: n,
        reporters: r,
        likes,
        first: format_date(first),
        last: format_date(last),
        span_days: (span * 10.0).round() / 10.0,
        weeks,
        coherence: (coherence * 1000.0).round() / 1000.0,
        members: g
            .iter()
            .map(|&i| GroupTicket {
                id: ts[i].id.clone(),
                time: crate::time::format_time(ts[i].time_ms),
                title: ts[i].title.clone(),
                reporter: ts[i].reporter.clone(),
                likes: ts[i].likes.unwrap_or(0),
            })
            .collect(),
        indexes: g,
    }
}

/// Most common coarse key, and the fine place most members name: counted over each
/// mention's key and aliases, a title's mention counting double; ties go to the longer key;
/// shown in its most common spelling.
pub fn group_place(corpus: &Corpus, g: &[usize]) -> Option<String> {
    let mut coarse: BTreeMap<&str, usize> = BTreeMap::new();
    let mut fine: BTreeMap<String, usize> = BTreeMap::new();
    let mut spelled: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for &i in g {
        let p = &corpus.places[i];
        if let Some(c) = p.coarse_key() {
            *coarse.entry(c).or_insert(0) += 1;
        }
        let mut w: HashMap<String, usize> = HashMap::new();
        for m in p.mentions.iter().take(4) {
            let weight = if m.in_title { 2 } else { 1 };
            let one = crate::place::Place { mentions: vec![m.clone()], ..Default::default() };
            for k in one.block_keys(1) {
                let e = w.entry(k).or_insert(0);
                *e = (*e).max(weight);
            }
            *spelled.entry((m.key.as_str(), m.name.as_str())).or_insert(0) += 1;
        }
        for (k, v) in w {
            *fine.entry(k).or_insert(0) += v;
        }
    }
    let c = coarse.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0))).map(|(k, _)| k.to_string());
    // A fine place counts when a third of the group names it.
    let f = fine
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(a.0.chars().count().cmp(&b.0.chars().count())).then(b.0.cmp(a.0)))
        .filter(|(_, v)| **v * 3 >= g.len())
        .map(|(k, _)| {
            // An alias (园滨河苑) is shown as the most common full name that holds it.
            spelled
                .iter()
                .filter(|((key, _), _)| key.contains(k.as_str()))
                .max_by(|a, b| a.1.cmp(b.1).then(b.0 .1.len().cmp(&a.0 .1.len())))
                .map(|((_, s), _)| s.to_string())
                .unwrap_or_else(|| k.clone())
        });
    match (c, f) {
        (Some(c), Some(f)) => Some(format!("{c}·{f}")),
        (Some(c), None) => Some(c),
        (None, Some(f)) => Some(f),
        (None, None) => None,
    }
}

/// Categories of matter a hotline sees, with the words that name them.
pub const MATTERS: &[(&str, &[&str])] = &[
    ("噪音扰民", &["噪音", "噪声", "扰民", "吵", "轰鸣"]),
    ("油烟污染", &["油烟"]),
    ("扬尘污染", &["扬尘", "粉尘", "灰尘"]),
    ("环境污染", &["污染", "臭气", "排污", "废气", "污水"]),
    ("违章建筑", &["违建", "违章建", "违法建设", "私搭乱建", "违规建"]),
    ("占道经营", &["占道", "摆摊", "流动摊"]),
    ("停车收费", &["停车费", "停车收费"]),
    ("车位销售", &["车位"]),
    ("物业管理", &["物业"]),
    ("房产销售", &["开发商", "售楼", "购房", "商品房", "认筹", "预售"]),
    ("交房与质量", &["交房", "房屋质量", "漏水", "开裂"]),
    ("房屋产权证", &["房产证", "不动产证", "产权证", "办证"]),
    ("拆迁补偿", &["拆迁", "征收", "征地", "补偿"]),
    ("学位入学", &["学位", "入学", "招生", "学区", "上学"]),
    ("教育收费", &["补课", "乱收费", "培训"]),
    ("交通出行", &["公交", "地铁", "红绿灯", "拥堵", "交通"]),
    ("道路设施", &["修路", "路面", "坑洼", "路灯", "人行道"]),
    ("供水供电", &["停水", "停电", "自来水", "水压", "供水", "供电"]),
    ("燃气", &["燃气", "天然气", "煤气"]),
    ("垃圾处理", &["垃圾"]),
    ("社保医保", &["社保", "医保", "养老保险", "公积金"]),
    ("劳动欠薪", &["欠薪", "工资", "拖欠"]),
    ("金融诈骗", &["诈骗", "集资", "p2p", "理财", "爆雷"]),
    ("安全隐患", &["安全隐患", "消防", "隐患"]),
    ("高压线", &["高压线", "变电站", "电塔"]),
    ("搅拌站", &["搅拌站", "搅拌厂"]),
    ("医疗卫生", &["医院", "医生", "看病"]),
    ("户籍证件", &["户口", "落户", "身份证", "签证"]),
];

/// The matter of a group: the longest phrase most member titles share (places taken out),
/// with the hotline category it falls in when a clear share of the group names one.
pub fn group_matter(corpus: &Corpus, g: &[usize]) -> String {
    let titles: Vec<String> = g.iter().map(|&i| text::normalize(&corpus.matter_title[i])).collect();
    let texts: Vec<String> = g.iter().map(|&i| text::normalize(&format!("{} {}", corpus.matter_title[i], corpus.matter_text[i].chars().take(300).collect::<String>()))).collect();
    let phrase = shared_phrase(corpus, &titles).or_else(|| shared_phrase(corpus, &texts));
    let mut best: Option<(&str, usize)> = None;
    for (label, words) in MATTERS {
        let c = titles.iter().filter(|t| words.iter().any(|w| t.contains(w))).count();
        if c * 2 >= g.len() && best.is_none_or(|(_, b)| c > b) {
            best = Some((label, c));
        }
    }
    match (phrase, best) {
        (Some(p), Some((l, _))) if !p.contains(l) => format!("{p}（{l}）"),
        (Some(p), _) => p,
        (None, Some((l, _))) => l.to_string(),
        (None, None) => corpus.tickets[g[0]].title.chars().take(20).collect(),
    }
}

/// A phrase of 2–10 characters found in the most of `docs` (at least two and a third of
/// them), grown from the best bigram while it keeps 80 % of its documents.
fn shared_phrase(corpus: &Corpus, docs: &[String]) -> Option<String> {
    let runs: Vec<Vec<Vec<char>>> = docs.iter().map(|d| text::runs(d)).collect();
    let mut df: HashMap<(char, char), usize> = HashMap::new();
    for r in &runs {
        let mut seen = HashSet::new();
        for run in r {
            for w in run.windows(2) {
                if seen.insert((w[0], w[1])) {
                    *df.entry((w[0], w[1])).or_insert(0) += 1;
                }
            }
        }
    }
    let min = 2.max(docs.len().div_ceil(3));
    // Frequent in the group, rare in the corpus.
    let score = |k: &(char, char), n: usize| {
        let s: String = [k.0, k.1].iter().collect();
        let idf = corpus.tfidf.idf(corpus.tfidf.df_of(&s));
        n as f32 * idf
    };
    let ok = |k: &(char, char)| {
        !(k.0.is_ascii_digit() && k.1.is_ascii_digit()) && !STOP_BIGRAMS.contains(&[k.0, k.1].iter().collect::<String>().as_str()) && !EDGE_CHARS.contains(&k.0) && !EDGE_CHARS.contains(&k.1)
    };
    let top = df.iter().filter(|(k, &n)| n >= min && ok(k)).map(|(_, &n)| n).max()?;
    let (seed, n) = df
        .iter()
        .filter(|(k, &n)| n * 4 >= top * 3 && n >= min && ok(k))
        .max_by(|a, b| score(a.0, *a.1).total_cmp(&score(b.0, *b.1)).then(b.0.cmp(a.0)))?;
    let mut phrase = vec![seed.0, seed.1];
    let contains = |p: &[char]| runs.iter().filter(|r| r.iter().any(|run| run.windows(p.len()).any(|w| w == p))).count();
    let keep = (*n as f32 * 0.8).ceil() as usize;
    while phrase.len() < 10 {
        let mut best: Option<(usize, Vec<char>)> = None;
        let mut cands: HashSet<Vec<char>> = HashSet::new();
        for r in &runs {
            for run in r {
                for s in 0..run.len().saturating_sub(phrase.len() - 1) {
                    if run[s..s + phrase.len()] == phrase[..] {
                        if s > 0 {
                            let mut p = vec![run[s - 1]];
                            p.extend(&phrase);
                            cands.insert(p);
                        }
                        if s + phrase.len() < run.len() {
                            let mut p = phrase.clone();
                            p.push(run[s + phrase.len()]);
                            cands.insert(p);
                        }
                    }
                }
            }
        }
        let mut cands: Vec<Vec<char>> = cands.into_iter().collect();
        cands.sort();
        for p in cands {
            let c = contains(&p);
            if c >= keep.max(2) && best.as_ref().is_none_or(|(b, _)| c > *b) {
                best = Some((c, p));
            }
        }
        match best {
            Some((_, p)) => phrase = p,
            None => break,
        }
    }
    while phrase.len() > 2 && EDGE_CHARS.contains(phrase.last().unwrap()) {
        phrase.pop();
    }
    while phrase.len() > 2 && EDGE_CHARS.contains(&phrase[0]) {
        phrase.remove(0);
    }
    Some(phrase.into_iter().collect())
}

/// Characters a phrase does not start or end with.
const EDGE_CHARS: &[char] = &['的', '在', '了', '是', '和', '与', '及', '对', '将', '把', '被', '给', '从', '向', '到', '于', '为', '有', '也', '都', '就', '还', '又', '请', '吗', '呢', '吧', '啊', '么', '个', '之', '等', '其', '该', '这', '那'];

/// Bigrams too common in tickets to name a matter.
const STOP_BIGRAMS: &[&str] = &[
    "关于", "问题", "反映", "投诉", "咨询", "建议", "请求", "希望", "领导", "您好", "尊敬", "请问", "我们", "小区", "业主", "居民", "相关", "部门", "严重",
    "何时", "能否", "是否", "市委", "市政", "政府", "为什么", "什么", "解决", "处理", "要求", "举报", "情况", "一下", "市民", "政府", "附近", "周边", "书记", "市长", "局长", "县长",
];

#[derive(Debug, Clone, Serialize)]
pub struct WeeklyCandidate {
    pub rank: usize,
    pub name: String,
    pub weeks: usize,
    pub tickets: usize,
    pub reporters: usize,
    pub first: String,
    pub last: String,
    pub score: f64,
    /// The hot issue it is (rank in the hot list).
    pub hot_rank: usize,
    pub per_week: BTreeMap<String, usize>,
}

/// 每周一题 candidates: groups that keep coming back, seen in at least `min_weeks` distinct
/// ISO weeks; most weeks first, then hottest.
pub fn weekly_candidates(hot: &HotReport, min_weeks: usize) -> Vec<WeeklyCandidate> {
    let mut v: Vec<WeeklyCandidate> = hot
        .groups
        .iter()
        .filter(|g| g.weeks.len() >= min_weeks.max(1))
        .map(|g| WeeklyCandidate {
            rank: 0,
            name: g.name.clone(),
            weeks: g.weeks.len(),
            tickets: g.tickets,
            reporters: g.reporters,
            first: g.first.clone(),
            last: g.last.clone(),
            score: g.score,
            hot_rank: g.rank,
            per_week: g.weeks.clone(),
        })
        .collect();
    v.sort_by(|a, b| b.weeks.cmp(&a.weeks).then(b.score.total_cmp(&a.score)).then(a.hot_rank.cmp(&b.hot_rank)));
    for (i, c) in v.iter_mut().enumerate() {
        c.rank = i + 1;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_time;
    use crate::Ticket;

    fn t(id: &str, time: &str, user: &str, title: &str, text: &str, likes: u32) -> Ticket {
        Ticket { id: id.into(), time_ms: parse_time(time).unwrap(), title: title.into(), text: text.into(), reporter: Some(user.into()), likes: Some(likes), ..Default::default() }
    }

    fn sample() -> Vec<Ticket> {
        vec![
            t("1", "2019-11-13 10:00:00", "u1", "投诉A2区丽发新城附近建搅拌站噪音扰民", "我是A2区丽发新城小区的业主，小区附近建搅拌站，噪音很大", 0),
            t("2", "2019-11-15 10:00:00", "u2", "丽发新城小区旁边建搅拌站", "丽发新城小区旁边建的搅拌站扬尘严重，噪音扰民", 3),
            t("3", "2019-11-20 10:00:00", "u3", "A2区丽发新城附近修建搅拌厂严重影响睡眠", "暮云街道丽发新城小区开发商在小区附近建一搅拌站，噪音嗡嗡", 1),
            t("4", "2019-11-21 10:00:00", "u4", "A2区丽发新城小区内垃圾站散发严重臭味", "丽发新城二期45栋旁建了一个垃圾中转站，臭气熏天", 0),
            t("5", "2019-11-22 10:00:00", "u5", "A5区魅力之城小区油烟扰民", "A5区劳动东路魅力之城小区临街门面长期油烟直排", 0),
            t("6", "2019-11-25 10:00:00", "u6", "A5区魅力之城小区一楼的夜宵摊油烟扰民", "魅力之城小区临街门面夜宵店油烟直排", 2),
            t("7", "2019-11-26 10:00:00", "u7", "A3区搅拌站噪音扰民", "A3区某工地搅拌站噪音扰民", 0),
            // Same matter and place as 1–3 but far outside the window.
            t("8", "2021-06-01 10:00:00", "u8", "丽发新城小区附近搅拌站噪音", "丽发新城小区附近搅拌站噪音又来了", 0),
        ]
    }

    #[test]
    fn groups_same_matter_same_place_within_window() {
        let ts = sample();
        let cfg = Config::default();
        let c = Corpus::build(&ts, &cfg);
        let r = hot_issues(&c, &cfg);
        let ids: Vec<Vec<&str>> = r.groups.iter().map(|g| g.members.iter().map(|m| m.id.as_str()).collect()).collect();
        assert_eq!(ids[0], vec!["1", "2", "3"], "{ids:?}");
        assert!(ids.contains(&vec!["5", "6"]), "{ids:?}");
        // The garbage station and the A3区 mixing plant are other matters / places.
        assert!(ids.iter().all(|g| !g.contains(&"4") && !g.contains(&"7") && !g.contains(&"8")), "{ids:?}");
        let top = &r.groups[0];
        assert!(top.name.starts_with("A2区·丽发新城"), "{}", top.name);
        assert!(top.matter.contains("搅拌"), "{}", top.matter);
        assert_eq!(top.reporters, 3);
        assert_eq!(top.likes, 4);
        assert_eq!(top.rank, 1);
        assert!((top.score - hot_score(3, 3, 4, 7.0)).abs() < 1e-3);
    }

    #[test]
    #[ignore]
    fn debug_pairs() {
        let ts = sample();
        let cfg = Config::default();
        let c = Corpus::build(&ts, &cfg);
        for i in 0..ts.len() {
            eprintln!("{i} {:?} fine={:?} mk={:?} tp={}", c.places[i], c.fine_keys[i].iter().map(|&k| &c.key_names[k as usize]).collect::<Vec<_>>(), c.matter_keys[i].iter().map(|&k| &c.key_names[k as usize]).collect::<Vec<_>>(), c.title_place[i]);
        }
        c.candidate_pairs(30 * DAY_MS, 200, false, |i, j| eprintln!("{i}-{j} sim {:.3} compat {} fine {}", c.sim(i, j), c.place_compatible(i, j), c.shares_fine(i, j)));
    }

    #[test]
    fn score_orders_by_reporters_then_likes() {
        assert!(hot_score(5, 5, 0, 1.0) > hot_score(5, 1, 0, 1.0));
        assert!(hot_score(3, 3, 2000, 1.0) > hot_score(3, 3, 0, 1.0));
        assert!(hot_score(10, 10, 0, 0.0) > hot_score(3, 3, 100, 30.0));
    }

    #[test]
    fn weekly_needs_distinct_weeks() {
        let mut ts = Vec::new();
        for w in 0..5i64 {
            ts.push(t(&format!("a{w}"), &crate::time::format_time(parse_time("2019-03-04 09:00:00").unwrap() + w * 7 * DAY_MS), &format!("u{w}"), "A7县春华镇金鼎村自来水到户问题", "春华镇金鼎村自来水一直没有到户", 0));
        }
        ts.push(t("b1", "2019-03-05 09:00:00", "x1", "A1区湘江路噪音扰民", "湘江路夜间施工噪音扰民", 0));
        ts.push(t("b2", "2019-03-06 09:00:00", "x2", "A1区湘江路施工噪音扰民", "湘江路夜间施工噪音很大", 0));
        let cfg = Config::default();
        let c = Corpus::build(&ts, &cfg);
        let hot = hot_issues(&c, &cfg);
        let w = weekly_candidates(&hot, 3);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].weeks, 5);
        assert!(w[0].name.contains("金鼎村"), "{}", w[0].name);
    }
}
