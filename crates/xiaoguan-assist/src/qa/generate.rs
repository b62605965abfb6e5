//! Stage 5, grounded generation: the passages as numbered sources in the prompt, the model's
//! text cut into sentences as it streams, and each sentence verified against its sources before
//! it is passed on — an unsupported sentence never reaches the caller.

use super::{ms, prompt, verify, AskRequest, Assistant};
use crate::error::Result;
use std::sync::Arc;
use std::time::Instant;
use xiaoguan_kb::SearchHit;
use xiaoguan_models::{Decoding, GenerateParams, Generator};

/// Sentence ends, and what a stop may be followed by.
const SENTENCE_ENDS: &str = "。！？!?\n；";
/// What the prompt tells the model to say when the sources do not answer.
const NO_ANSWER: &str = "资料中没有相关内容";
/// Generated tokens one request may ask for.
pub const MAX_NEW_TOKENS: usize = 1024;

#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// At least as many verified sentences as removed ones: they are the answer (already streamed).
    Answered { text: String, kept: usize, removed: usize },
    /// The model says the sources hold no answer, and no sentence verified.
    NoAnswer,
    /// Too few verified sentences: the extractive answer follows (streamed sentences stay).
    Unverified,
}

pub struct Generation {
    pub outcome: Outcome,
    pub verification: verify::Verification,
    pub generate_ms: f64,
    pub verify_ms: f64,
    pub notes: Vec<String>,
}

/// The next complete sentence of `pending` (with a citation marker right after its stop), or
/// with `flush` whatever is left.
fn next_sentence(pending: &mut String, flush: bool) -> Option<String> {
    let cut = pending.char_indices().find(|(_, c)| SENTENCE_ENDS.contains(*c)).map(|(i, c)| i + c.len_utf8());
    // A citation marker right after the stop belongs to that sentence.
    let cut = cut.map(|i| {
        let rest = &pending[i..];
        if rest.starts_with('[') {
            rest.find(']').map(|j| i + j + 1).unwrap_or(i)
        } else {
            i
        }
    });
    match cut {
        Some(i) if i < pending.len() || flush => Some(pending.drain(..i).collect()),
        _ if flush && !pending.trim().is_empty() => Some(std::mem::take(pending)),
        _ => None,
    }
}

impl Assistant {
    pub(super) fn generate(&self, g: &Arc<dyn Generator>, q: &str, hits: &[SearchHit], req: &AskRequest, on_text: &mut dyn FnMut(&str) -> bool) -> Result<Generation> {
        let t = Instant::now();
        let mut notes = Vec::new();
        let blocks: Vec<String> = hits.iter().enumerate().map(|(i, h)| prompt::source_block(i + 1, &h.title, &h.heading_path, &h.text)).collect();
        let max_new = req.max_new_tokens.unwrap_or(self.config.max_new_tokens).clamp(1, MAX_NEW_TOKENS);
        // The prompt must leave room for the reply inside the model's context.
        let budget = self.config.max_context_tokens.min(g.context_length().saturating_sub(max_new + 16));
        let (messages, n_sources) = prompt::build(g.as_ref(), q, &blocks, budget)?;
        let sources: Vec<&str> = hits.iter().take(n_sources).map(|h| h.text.as_str()).collect();
        let mut pending = String::new();
        let mut kept: Vec<String> = Vec::new();
        let mut checks = Vec::new();
        let mut verify_ms = 0.0;
        let mut stopped = false;
        let mut take_sentences = |pending: &mut String, flush: bool, kept: &mut Vec<String>, checks: &mut Vec<verify::SentenceCheck>, on_text: &mut dyn FnMut(&str) -> bool| -> bool {
            let vt = Instant::now();
            let mut go_on = true;
            while let Some(piece) = next_sentence(pending, flush) {
                for c in verify::verify(&piece, &sources, self.config.verify_min_support).sentences {
                    if c.supported {
                        let s = format!("{} [{}]", c.sentence, c.cites[0]);
                        go_on &= on_text(&s);
                        kept.push(s);
                    }
                    checks.push(c);
                }
            }
            verify_ms += ms(vt);
            go_on
        };
        let params = GenerateParams { max_new_tokens: max_new, decoding: Decoding::Greedy, cancel: req.cancel.clone(), ..Default::default() };
        let generated = g.generate(&messages, &params, &mut |delta| {
            pending.push_str(delta);
            if !take_sentences(&mut pending, false, &mut kept, &mut checks, on_text) {
                stopped = true;
            }
            !stopped
        });
        // A generator failure (the prompt does not fit, a broken model) is ours, not the
        // caller's: the extractive answer follows, and the note says why.
        let generated_text = match generated {
            Ok(g) => g.text,
            Err(e) => {
                tracing::warn!(error = %e, "generation failed; extractive answer instead");
                notes.push(format!("the generator failed ({e})"));
                String::new()
            }
        };
        take_sentences(&mut pending, true, &mut kept, &mut checks, on_text);
        let generate_ms = ms(t) - verify_ms;
        let removed = checks.iter().filter(|c| !c.supported).count();
        let verification = verify::Verification { kept: kept.len(), removed, text: kept.join(""), sentences: checks };
        let outcome = if generated_text.contains(NO_ANSWER) && kept.is_empty() {
            notes.push("the generator found no answer in the sources".into());
            Outcome::NoAnswer
        } else if !kept.is_empty() && removed <= kept.len() {
            Outcome::Answered { text: kept.join(""), kept: kept.len(), removed }
        } else {
            // What the model said stays in the log: an unverified sentence may be anything (an
            // echoed prompt, a document's instruction), so it is not put in the answer.
            let head: String = generated_text.chars().take(120).collect();
            tracing::debug!(generated = %head, "generated answer failed verification");
            notes.push(format!("generated answer failed verification ({removed} of {} sentences unsupported): extractive answer instead", removed + kept.len()));
            if !kept.is_empty() {
                // Sentences already streamed stay; the extractive text follows them.
                on_text("\n");
            }
            Outcome::Unverified
        };
        Ok(Generation { outcome, verification, generate_ms, verify_ms, notes })
    }
}

#[cfg(test)]
mod tests {
    use super::next_sentence;

    #[test]
    fn sentences_are_cut_at_their_stop_with_the_citation_that_follows() {
        let mut p = String::from("失业保险金按月发放。[2]最长领取24个月；其余");
        assert_eq!(next_sentence(&mut p, false).as_deref(), Some("失业保险金按月发放。[2]"));
        assert_eq!(next_sentence(&mut p, false).as_deref(), Some("最长领取24个月；"));
        assert_eq!(next_sentence(&mut p, false), None, "an unfinished sentence waits");
        assert_eq!(next_sentence(&mut p, true).as_deref(), Some("其余"));
        assert_eq!(next_sentence(&mut p, true), None);
    }

    #[test]
    fn a_stop_at_the_very_end_waits_for_a_possible_citation_unless_flushing() {
        let mut p = String::from("按月发放。");
        assert_eq!(next_sentence(&mut p, false), None);
        assert_eq!(next_sentence(&mut p, true).as_deref(), Some("按月发放。"));
        let mut p = String::from("按月发放。[1");
        assert_eq!(next_sentence(&mut p, false).as_deref(), Some("按月发放。"), "an unclosed marker is not taken");
    }
}
