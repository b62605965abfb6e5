//! Extractive answers: the sentences of the retrieved passages that best match the question,
//! in document order, each with its citation. No generation, so fast, and nothing is invented.

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
    chosen.into_iter().map(|(source, _, sentence, score)| Extract { source: source + 1, sentence, score }).collect()
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
}
