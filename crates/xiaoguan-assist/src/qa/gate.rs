//! Stage 4, the evidence gate (人工兜底): what the retrieved passages say about the question —
//! the best passage's dense similarity and the share of the question's content bigrams found in
//! the top passages — and whether that is enough to answer at all.

use crate::lexical::{bigrams, containment, letters};
use std::collections::HashSet;
use xiaoguan_kb::SearchHit;

/// Passages whose text counts toward the question's coverage.
const COVERAGE_PASSAGES: usize = 3;

/// What the gate measured on one question's hits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    pub best_similarity: f32,
    pub coverage: f32,
}

/// The gate's two thresholds (`evidence_min_similarity`, `evidence_min_coverage`).
#[derive(Debug, Clone, Copy)]
pub struct Gate {
    pub min_similarity: f32,
    pub min_coverage: f32,
}

/// `question_bigrams` are the question's content bigrams; `hits` best first.
pub fn measure(question_bigrams: &HashSet<(char, char)>, hits: &[SearchHit]) -> Measured {
    let best_similarity = hits.first().and_then(|h| h.similarity).unwrap_or(0.0);
    let top_text: String = hits.iter().take(COVERAGE_PASSAGES).map(|h| h.text.as_str()).collect::<Vec<_>>().join("\n");
    Measured { best_similarity, coverage: containment(question_bigrams, &bigrams(&letters(&top_text))) }
}

impl Gate {
    /// The answer's confidence when the evidence passes, else the reason for handing off.
    pub fn judge(&self, m: Measured, any_hits: bool) -> Result<f32, String> {
        if !any_hits || m.best_similarity < self.min_similarity || m.coverage < self.min_coverage {
            return Err(format!(
                "evidence gate: best similarity {:.3} (needs {:.2}), question coverage {:.2} (needs {:.2})",
                m.best_similarity, self.min_similarity, m.coverage, self.min_coverage
            ));
        }
        // Similarity above the threshold, scaled to 0..1, and coverage count equally.
        let support = ((m.best_similarity - self.min_similarity) / (1.0 - self.min_similarity)).clamp(0.0, 1.0);
        Ok((0.5 * support + 0.5 * m.coverage).clamp(0.0, 1.0))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::lexical::content_bigrams;

    pub(crate) fn hit(kb: &str, text: &str, similarity: f32) -> SearchHit {
        SearchHit {
            kb: kb.into(),
            chunk_id: format!("{kb}:{text}"),
            doc_id: format!("{kb}/doc"),
            title: "t".into(),
            heading_path: "t".into(),
            article: None,
            doc_no: None,
            text: text.into(),
            score: similarity,
            similarity: Some(similarity),
            via: "hybrid",
            payload: Default::default(),
        }
    }

    const GATE: Gate = Gate { min_similarity: 0.88, min_coverage: 0.10 };

    #[test]
    fn coverage_counts_the_top_three_passages_only() {
        let q = content_bigrams("社保卡丢了怎么补办");
        let far = [hit("a", "无关内容甲", 0.95), hit("a", "无关内容乙", 0.94), hit("a", "无关内容丙", 0.93), hit("a", "社保卡丢了补办", 0.92)];
        assert_eq!(measure(&q, &far).coverage, 0.0);
        let near = [hit("a", "社保卡丢了可以补办", 0.95)];
        let m = measure(&q, &near);
        assert!(m.coverage > 0.5 && m.best_similarity == 0.95, "{m:?}");
    }

    #[test]
    fn either_threshold_or_no_hits_hands_off_with_the_figures() {
        let ok = Measured { best_similarity: 0.94, coverage: 0.6 };
        let c = GATE.judge(ok, true).unwrap();
        assert!((c - (0.5 * 0.5 + 0.5 * 0.6)).abs() < 1e-5, "{c}");
        assert!(GATE.judge(ok, false).is_err());
        let why = GATE.judge(Measured { best_similarity: 0.87, coverage: 0.9 }, true).unwrap_err();
        assert!(why.contains("0.870") && why.contains("needs 0.88"), "{why}");
        assert!(GATE.judge(Measured { best_similarity: 0.99, coverage: 0.05 }, true).is_err());
        assert_eq!(GATE.judge(Measured { best_similarity: 1.0, coverage: 1.0 }, true), Ok(1.0));
    }
}
