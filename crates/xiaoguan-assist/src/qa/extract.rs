//! Extractive answers: the sentences of the retrieved passages that best match the question,
//! in document order, each with its citation. No generation, so fast, and nothing is invented.
//! When the best passage introduces a list (下列条件：（一）…（N）, 以下材料：1. 2. 3.), the answer
//! carries the whole list from that passage, in order, before anything from other passages.

use crate::lexical::{bigrams, containment, content_bigrams, letters};

/// A chosen sentence and the 1-based source it came from.
#[derive(Debug, Clone)]
pub struct Extract {
    pub source: usize,
    pub sentence: String,
    pub score: f32,
}

/// Up to `max_chars` of the best sentences from `sources` (best source first).
pub fn extract(question: &str, sources: &[&str], max_chars: usize) -> Vec<Extract> {
    let q = content_bigrams(question);
    let mut scored: Vec<(usize, usize, String, f32)> = Vec::new();
    for (si, text) in sources.iter().enumerate() {
        // The first source is the best retrieved: prefer it when sentences tie.
        let prior = 1.0 / (1.0 + si as f32 * 0.15);
        for (pos, s) in xiaoguan_text::sentences::split(text).into_iter().enumerate() {
            let s = s.trim();
            // Headings and fragments carry no answer.
            if s.starts_with('#') || letters(s).len() < 6 {
                continue;
            }
            let sb = bigrams(&letters(s));
            let overlap = containment(&q, &sb);
            scored.push((si, pos, s.to_string(), overlap * prior));
        }
    }
    let all = scored.clone();
    scored.sort_by(|a, b| b.3.total_cmp(&a.3));
    // Sentences far below the best one are noise, not the answer.
    let floor = scored.first().map(|s| s.3 * 0.5).unwrap_or(0.0);
    scored.retain(|s| s.3 >= floor);
    let mut chosen: Vec<(usize, usize, String, f32)> = Vec::new();
    let mut used = 0;
    for s in scored {
        if s.3 <= 0.0 {
            break;
        }
        // The same sentence in two sources (a policy quoting a law) is said once.
        if chosen.iter().any(|c| letters(&c.2) == letters(&s.2)) {
            continue;
        }
        let len = s.2.chars().count();
        if !chosen.is_empty() && used + len > max_chars {
            continue;
        }
        used += len;
        chosen.push(s);
        if used >= max_chars || chosen.len() >= 4 {
            break;
        }
    }
    // A chosen sentence's next sentence often finishes the thought ("…最长为十二个月。累计缴费满
    // 十年的，最长为二十四个月。"): keep it when it shares something with the question.
    let followers: Vec<(usize, usize, String, f32)> = chosen
        .iter()
        .filter_map(|c| all.iter().find(|n| n.0 == c.0 && n.1 == c.1 + 1 && n.3 > 0.0).cloned())
        .collect();
    for f in followers {
        let len = f.2.chars().count();
        if used + len <= max_chars + max_chars / 2 && !chosen.iter().any(|c| c.0 == f.0 && c.1 == f.1) {
            used += len;
            chosen.push(f);
        }
    }
    // Read in source order, sentence order: answers read like the document.
    chosen.sort_by_key(|c| (c.0, c.1));
    let mut out: Vec<Extract> = chosen.into_iter().map(|(source, _, sentence, score)| Extract { source: source + 1, sentence, score }).collect();
    // The best passage's list, whole and first, when the question is about what the list holds.
    let best = all.iter().max_by(|a, b| a.3.total_cmp(&b.3).then(b.0.cmp(&a.0)));
    if let Some(best) = best.filter(|b| b.3 > 0.0) {
        let si = best.0;
        if let Some(list) = enumerated_list(sources[si]) {
            let lead_match = containment(&q, &bigrams(&letters(&list.lead)));
            let best_in_list = list.contains(&best.2);
            if best_in_list || lead_match >= 0.3 {
                let score = best.3;
                let text = list.text();
                out.retain(|e| !(e.source == si + 1 && list.contains(&e.sentence)));
                // Other passages after the list, within the usual budget.
                let mut used = 0;
                out.retain(|e| {
                    used += e.sentence.chars().count();
                    e.source != si + 1 || used <= max_chars
                });
                out.insert(0, Extract { source: si + 1, sentence: text, score });
            }
        }
    }
    out
}

/// A list a passage introduces: the lead-in ending with a colon, and its items in order.
#[derive(Debug, Clone, PartialEq)]
pub struct EnumeratedList {
    pub lead: String,
    pub items: Vec<String>,
}

impl EnumeratedList {
    fn text(&self) -> String {
        format!("{}\n{}", self.lead, self.items.join("\n"))
    }

    /// Whether a sentence of the passage is part of the list (its lead-in or an item).
    fn contains(&self, sentence: &str) -> bool {
        let flat = |t: &str| letters(t).into_iter().collect::<String>();
        let s = flat(sentence);
        !s.is_empty() && (flat(&self.lead).contains(&s) || self.items.iter().any(|i| flat(i).contains(&s) || s.contains(&flat(i))))
    }
}

const CN_NUMERALS: &str = "一二三四五六七八九十";

/// The length in bytes of a list marker at the start of `s`: （一） (一) 一、 1. 1、 （1） (1) ①.
fn marker_len(s: &str) -> Option<usize> {
    let mut it = s.char_indices();
    let (_, c0) = it.next()?;
    if ('①'..='⑳').contains(&c0) {
        return Some(c0.len_utf8());
    }
    let (open, body_start) = if c0 == '(' || c0 == '（' { (true, c0.len_utf8()) } else { (false, 0) };
    let body: String = s[body_start..].chars().take_while(|c| CN_NUMERALS.contains(*c) || c.is_ascii_digit()).collect();
    if body.is_empty() || body.chars().count() > 3 {
        return None;
    }
    let after = &s[body_start + body.len()..];
    let close = after.chars().next()?;
    let ok = if open { close == ')' || close == '）' } else { matches!(close, '、' | '.' | '．') && !(close == '.' && after[1..].starts_with(|c: char| c.is_ascii_digit())) };
    ok.then(|| body_start + body.len() + close.len_utf8())
}

/// The list a passage introduces: a lead-in ending with "：" (下列条件：, 以下材料：) directly
/// followed by enumerated items; the last item ends at its sentence end.
pub fn enumerated_list(text: &str) -> Option<EnumeratedList> {
    for (colon, c) in text.char_indices().filter(|(_, c)| *c == '：' || *c == ':') {
        let rest = text[colon + c.len_utf8()..].trim_start();
        if marker_len(rest).is_none() {
            continue;
        }
        let lead_start = text[..colon].rfind(['。', '；', '\n']).map(|i| i + text[i..].chars().next().map_or(1, char::len_utf8)).unwrap_or(0);
        let lead = text[lead_start..colon + c.len_utf8()].trim().to_string();
        // Item starts: a marker at the start of the rest, of a line, or after 。；
        let mut starts = Vec::new();
        for (i, ch) in rest.char_indices() {
            let at_boundary = i == 0 || rest[..i].ends_with(['\n', '。', '；', ';', ' ']);
            if at_boundary && marker_len(&rest[i..]).is_some() && !ch.is_whitespace() {
                starts.push(i);
            }
        }
        if starts.len() < 2 {
            continue;
        }
        let mut items = Vec::new();
        for (k, &st) in starts.iter().enumerate() {
            let end = starts.get(k + 1).copied().unwrap_or(rest.len());
            let mut item = rest[st..end].trim().to_string();
            if k + 1 == starts.len() {
                // The last item stops at its own sentence end; what follows is not the list.
                if let Some(stop) = item.find('。') {
                    item.truncate(stop + '。'.len_utf8());
                }
                if let Some(nl) = item.find('\n') {
                    item.truncate(nl);
                }
            }
            items.push(item);
        }
        return Some(EnumeratedList { lead, items });
    }
    None
}

/// "sentence [n]" joined: the extractive answer text.
pub fn render(extracts: &[Extract]) -> String {
    extracts.iter().map(|e| format!("{} [{}]", e.sentence.trim_end(), e.source)).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_matching_sentences_with_sources() {
        let a = "第二十七条 失业人员失业前累计缴费满一年不足五年的，领取失业保险金的期限最长为十二个月。累计缴费满十年的，最长为二十四个月。";
        let b = "第五条 本条例所称社会保险经办，是指经办机构办理社会保险登记。";
        let out = extract("失业保险金最长领取多长时间", &[a, b], 200);
        assert!(!out.is_empty());
        assert!(out.iter().all(|e| e.source == 1), "{out:?}");
        assert!(render(&out).contains("十二个月。 [1]"));
        assert!(extract("天气预报", &[b], 200).is_empty(), "nothing matches, nothing is said");
    }

    const PERMIT: &str = "第二十五条 建设单位申请领取施工许可证，应当具备下列条件：\n(一)已经办理该建筑工程用地批准手续；\n(二)依法应当办理建设工程规划许可证的，已经取得建设工程规划许可证；\n(三)需要拆迁的，其拆迁进度符合施工要求；\n(四)已经确定建筑施工企业；\n(五)有满足施工需要的资金安排、施工图纸及技术资料；\n(六)有保证工程质量和安全的具体措施。\n建设行政主管部门应当自收到申请之日起七日内，对符合条件的申请颁发施工许可证。";

    #[test]
    fn a_list_the_best_passage_introduces_is_carried_whole_and_first() {
        let other = "第八条 申请领取施工许可证的，建设单位应当提交施工许可证申请表。";
        let out = extract("申请领取施工许可证应当具备哪些条件", &[PERMIT, other], 260);
        let text = render(&out);
        let mut at = 0;
        for item in ["应当具备下列条件：", "(一)已经办理", "(二)依法应当", "(三)需要拆迁", "(四)已经确定", "(五)有满足", "(六)有保证工程质量和安全的具体措施。"] {
            let pos = text[at..].find(item).unwrap_or_else(|| panic!("'{item}' missing or out of order in\n{text}"));
            at += pos + item.len();
        }
        assert!(out[0].source == 1 && out[0].sentence.starts_with("第二十五条"), "{out:?}");
        assert!(!out[0].sentence.contains("七日内"), "the list ends where its last item ends: {}", out[0].sentence);
    }

    #[test]
    fn lists_in_other_numberings() {
        let l = enumerated_list("申请人应当提交以下材料：1.身份证；2.申请表；3.近期照片。其他事项另行通知。").unwrap();
        assert_eq!(l.lead, "申请人应当提交以下材料：");
        assert_eq!(l.items, ["1.身份证；", "2.申请表；", "3.近期照片。"]);
        let l = enumerated_list("符合下列情形之一的：①失业的；②退休的。").unwrap();
        assert_eq!(l.items.len(), 2);
        assert!(enumerated_list("金额为1.5万元：详见附件。").is_none());
        assert!(enumerated_list("第一条 为了规范社会保险关系，制定本法。").is_none());
        assert_eq!(marker_len("（十二）内容"), Some("（十二）".len()));
        assert_eq!(marker_len("2025年"), None);
    }
}
