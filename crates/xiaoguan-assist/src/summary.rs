//! A one-paragraph summary of a ticket for the agent: the sentences that carry the request
//! (asks, demands, complaints), led by the opening that says what it is about. Extractive, so
//! it never invents; works on masked text so it never shows personal data.

/// Words that mark the sentence stating what the caller wants.
const REQUEST_CUES: &[&str] = &[
    "请问", "希望", "要求", "建议", "恳请", "请求", "能否", "是否", "何时", "怎么办", "如何", "投诉", "举报", "反映", "咨询", "为什么", "请相关部门", "尽快",
];

/// Summary of at most `max_chars` characters (plus "…" when cut).
pub fn summarize(text: &str, title: Option<&str>, max_chars: usize) -> String {
    let sentences: Vec<&str> = xiaoguan_text::sentences::split(text).into_iter().map(str::trim).filter(|s| s.chars().count() >= 4).collect();
    if sentences.is_empty() {
        return title.map(str::to_string).unwrap_or_else(|| text.chars().take(max_chars).collect());
    }
    let mut picked: Vec<usize> = vec![0];
    let mut requests: Vec<usize> = (1..sentences.len()).filter(|&i| REQUEST_CUES.iter().any(|c| sentences[i].contains(c))).collect();
    // The last request sentences usually state the demand; keep up to two.
    requests.reverse();
    requests.truncate(2);
    picked.extend(requests);
    picked.sort();
    picked.dedup();
    let mut out = String::new();
    if let Some(t) = title.map(str::trim).filter(|t| !t.is_empty()) {
        out.push_str(&format!("【{t}】"));
    }
    for i in picked {
        let s = sentences[i];
        if out.chars().count() + s.chars().count() > max_chars && out.chars().count() > 10 {
            break;
        }
        out.push_str(s);
    }
    if out.chars().count() > max_chars {
        out = out.chars().take(max_chars).collect::<String>() + "…";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_opening_and_the_request() {
        let t = "我是某小区业主。小区门口的路灯已经坏了三个月。晚上非常黑，老人经常摔倒。多次找物业没有结果。希望相关部门尽快维修路灯。";
        let s = summarize(t, None, 120);
        assert!(s.starts_with("我是某小区业主。"), "{s}");
        assert!(s.contains("希望相关部门尽快维修路灯"), "{s}");
        assert!(!s.contains("多次找物业"), "{s}");
        assert!(summarize(t, Some("路灯不亮"), 20).chars().count() <= 21 + 6);
    }
}
