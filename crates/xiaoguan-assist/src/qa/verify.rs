//! Verification of generated answers: every sentence must be supported by the chunk it cites
//! (or, without a citation, by some retrieved chunk): most of its character bigrams occur there,
//! and every number in it occurs there too (numbers are where small models invent things).
//! Unsupported sentences are removed; the caller downgrades the answer when too much goes.

use crate::lexical::{bigrams, containment, letters, numbers};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct SentenceCheck {
    pub sentence: String,
    /// 1-based source numbers the sentence cites (after verification: the one that supports it).
    pub cites: Vec<usize>,
    pub support: f32,
    pub supported: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub sentences: Vec<SentenceCheck>,
    pub kept: usize,
    pub removed: usize,
    /// The answer with only the supported sentences, each ending with its citation marker.
    pub text: String,
}

fn citations_in(s: &str) -> (String, Vec<usize>) {
    let mut cites = Vec::new();
    let mut out = String::new();
    let mut rest = s;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find(']') {
            Some(close) if after[..close].split([',', '，', ' ']).filter(|x| !x.is_empty()).all(|x| x.parse::<usize>().is_ok()) && close > 0 => {
                cites.extend(after[..close].split([',', '，', ' ']).filter_map(|x| x.parse::<usize>().ok()));
                rest = &after[close + 1..];
            }
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    (out.trim().to_string(), cites)
}

/// Check `answer` against `sources` (1-based in citations). `min_support`: bigram containment needed.
pub fn verify(answer: &str, sources: &[&str], min_support: f32) -> Verification {
    let source_bigrams: Vec<_> = sources.iter().map(|s| bigrams(&letters(s))).collect();
    let source_numbers: Vec<Vec<String>> = sources.iter().map(|s| numbers(s)).collect();
    let mut checks = Vec::new();
    for raw in xiaoguan_text::sentences::split(answer) {
        let (sentence, cites) = citations_in(&raw);
        let chars = letters(&sentence);
        if chars.len() < 2 {
            continue;
        }
        let sb = bigrams(&chars);
        let nums = numbers(&sentence);
        let candidates: Vec<usize> = if cites.iter().any(|&c| c >= 1 && c <= sources.len()) {
            cites.iter().copied().filter(|&c| c >= 1 && c <= sources.len()).collect()
        } else {
            (1..=sources.len()).collect()
        };
        let best = candidates
            .iter()
            .map(|&c| {
                let numbers_ok = nums.iter().all(|n| source_numbers[c - 1].contains(n));
                (c, if numbers_ok { containment(&sb, &source_bigrams[c - 1]) } else { 0.0 })
            })
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let (cite, support) = best.unwrap_or((0, 0.0));
        checks.push(SentenceCheck { sentence, cites: if cite > 0 { vec![cite] } else { vec![] }, support, supported: support >= min_support });
    }
    let kept: Vec<&SentenceCheck> = checks.iter().filter(|c| c.supported).collect();
    let text = kept.iter().map(|c| format!("{} [{}]", c.sentence, c.cites[0])).collect::<Vec<_>>().join("");
    Verification { kept: kept.len(), removed: checks.len() - kept.len(), sentences: checks, text }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "失业人员失业前用人单位和本人累计缴费满一年不足五年的，领取失业保险金的期限最长为十二个月；累计缴费满十年以上的，最长为二十四个月。";

    #[test]
    fn keeps_supported_and_removes_invented_sentences() {
        let answer = "累计缴费满十年以上的，领取失业保险金最长为二十四个月[1]。失业保险金可以领取10年[1]。";
        let v = verify(answer, &[SRC], 0.6);
        assert_eq!((v.kept, v.removed), (1, 1), "{v:?}");
        assert!(v.text.contains("二十四个月") && v.text.ends_with("[1]"));
        assert!(!v.text.contains("10年"));
    }

    #[test]
    fn a_number_missing_from_the_source_fails_the_sentence() {
        let v = verify("累计缴费满一年不足五年的，最长为18个月。", &[SRC], 0.5);
        assert_eq!(v.kept, 0);
    }

    #[test]
    fn uncited_sentences_find_their_source_and_bad_markers_are_text() {
        let other = "社会保险经办机构应当及时支付。";
        let v = verify("领取失业保险金的期限最长为十二个月。", &[other, SRC], 0.6);
        assert_eq!(v.sentences[0].cites, vec![2]);
        let (s, c) = citations_in("见[附件]和[2]");
        assert_eq!((s.as_str(), c), ("见[附件]和", vec![2]));
    }
}
