//! A compact Unigram model inside the tokenizers pipeline.
//!
//! The library's own `Unigram` keeps its 250k-piece vocabulary (multilingual e5) as a byte trie
//! with a hash map in every node plus a string map: ≈330 MB resident, more than the int8 encoder
//! itself. This model keeps the pieces in one string with offsets and a byte-sorted index
//! (≈6 MB), finds the pieces that start at a position by narrowing that index one byte at a time,
//! and runs the same Viterbi as the library (its `encode_optimized`: f64 scores, the unknown
//! penalty, ties kept by the shorter piece, consecutive unknowns fused). Normalization,
//! pre-tokenization, added tokens and the post-processor stay the library's, read from the same
//! `tokenizer.json`, so the ids are the library's ids (checked over real texts in the real-model
//! tests and over the tiny fixture in unit tests).

use crate::error::{ModelError, Result};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::unigram::UnigramTrainer;
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{AddedToken, Model, Token, TokenizerImpl};

/// The library's penalty for a character no piece covers (sentencepiece's kUnkPenalty).
const UNK_PENALTY: f64 = 10.0;

pub type UnigramTokenizer = TokenizerImpl<CompactUnigram, NormalizerWrapper, PreTokenizerWrapper, PostProcessorWrapper, DecoderWrapper>;

pub struct CompactUnigram {
    /// Every piece, one after another; piece `i` is `blob[starts[i]..starts[i + 1]]`.
    blob: String,
    starts: Vec<u32>,
    scores: Vec<f64>,
    /// Piece ids ordered by their bytes; of pieces spelled alike only the last id (as the library's map keeps).
    sorted: Vec<u32>,
    unk_id: u32,
    min_score: f64,
}

impl CompactUnigram {
    pub fn new(vocab: &[(String, f64)], unk_id: usize) -> std::result::Result<Self, String> {
        if unk_id >= vocab.len() {
            return Err(format!("unk_id {unk_id} is outside the vocabulary ({} pieces)", vocab.len()));
        }
        let mut blob = String::with_capacity(vocab.iter().map(|(p, _)| p.len()).sum());
        let mut starts = Vec::with_capacity(vocab.len() + 1);
        for (piece, _) in vocab {
            starts.push(u32::try_from(blob.len()).map_err(|_| "the vocabulary is over 4 GB".to_string())?);
            blob.push_str(piece);
        }
        starts.push(u32::try_from(blob.len()).map_err(|_| "the vocabulary is over 4 GB".to_string())?);
        let scores: Vec<f64> = vocab.iter().map(|(_, s)| *s).collect();
        let min_score = scores.iter().copied().fold(f64::INFINITY, f64::min);
        // Stable sort by spelling, then keep the last id of each spelling.
        let mut sorted: Vec<u32> = (0..vocab.len() as u32).collect();
        sorted.sort_by(|&a, &b| vocab[a as usize].0.cmp(&vocab[b as usize].0));
        let mut kept: Vec<u32> = Vec::with_capacity(sorted.len());
        for id in sorted {
            match kept.last_mut() {
                Some(last) if vocab[*last as usize].0 == vocab[id as usize].0 => *last = id,
                _ => kept.push(id),
            }
        }
        Ok(Self { blob, starts, scores, sorted: kept, unk_id: unk_id as u32, min_score })
    }

    fn piece(&self, id: u32) -> &str {
        &self.blob[self.starts[id as usize] as usize..self.starts[id as usize + 1] as usize]
    }

    fn id_of(&self, token: &str) -> Option<u32> {
        self.sorted.binary_search_by(|&id| self.piece(id).as_bytes().cmp(token.as_bytes())).ok().map(|i| self.sorted[i])
    }

    /// Ids and byte lengths of the pieces `text` starts with, shortest first.
    fn prefixes(&self, text: &[u8], out: &mut Vec<(u32, usize)>) {
        out.clear();
        let (mut lo, mut hi) = (0, self.sorted.len());
        for (depth, &byte) in text.iter().enumerate() {
            // Within [lo, hi) every piece starts with text[..depth]; the one equal to it comes first.
            let range = &self.sorted[lo..hi];
            let below = |id: &u32, inclusive: bool| {
                let p = self.piece(*id).as_bytes();
                p.len() <= depth || if inclusive { p[depth] <= byte } else { p[depth] < byte }
            };
            let new_lo = lo + range.partition_point(|id| below(id, false));
            let new_hi = lo + range.partition_point(|id| below(id, true));
            (lo, hi) = (new_lo, new_hi);
            if lo == hi {
                return;
            }
            let first = self.sorted[lo];
            if self.piece(first).len() == depth + 1 {
                out.push((first, depth + 1));
            }
        }
    }

    /// The best segmentation of `sentence` into pieces (the library's `encode_optimized`).
    fn segment(&self, sentence: &str) -> Vec<(usize, usize, Option<u32>)> {
        #[derive(Clone, Copy)]
        struct Best {
            id: u32,
            score: f64,
            starts_at: Option<usize>,
        }
        let size = sentence.len();
        let bytes = sentence.as_bytes();
        let unk_score = self.min_score - UNK_PENALTY;
        let mut best = vec![Best { id: 0, score: 0.0, starts_at: None }; size + 1];
        let mut found = Vec::new();
        let mut at = 0;
        while at < size {
            let here = best[at].score;
            let char_len = sentence[at..].chars().next().map_or(1, char::len_utf8);
            let mut single = false;
            self.prefixes(&bytes[at..], &mut found);
            for &(id, len) in &found {
                let node = &mut best[at + len];
                let score = self.scores[id as usize] + here;
                if node.starts_at.is_none() || score > node.score {
                    *node = Best { id, score, starts_at: Some(at) };
                }
                single |= len == char_len;
            }
            if !single {
                let node = &mut best[at + char_len];
                let score = unk_score + here;
                if node.starts_at.is_none() || score > node.score {
                    *node = Best { id: self.unk_id, score, starts_at: Some(at) };
                }
            }
            at += char_len;
        }
        // Back from the end; runs of unknowns become one span.
        let mut spans: Vec<(usize, usize, Option<u32>)> = Vec::new();
        let mut end = size;
        let mut unk_start: Option<usize> = None;
        let mut unk_end = 0;
        while end > 0 {
            let node = best[end];
            let start = node.starts_at.expect("every position is reached");
            if node.id == self.unk_id {
                if unk_start.is_none() {
                    unk_end = end;
                }
                unk_start = Some(start);
            } else {
                if let Some(s) = unk_start.take() {
                    spans.push((s, unk_end, None));
                }
                spans.push((start, end, Some(node.id)));
            }
            end = start;
        }
        if let Some(s) = unk_start {
            spans.push((s, unk_end, None));
        }
        spans.reverse();
        spans
    }
}

impl Model for CompactUnigram {
    /// The library's trainer: this model is only ever loaded from a trained vocabulary.
    type Trainer = UnigramTrainer;

    fn tokenize(&self, sequence: &str) -> tokenizers::Result<Vec<Token>> {
        Ok(self
            .segment(sequence)
            .into_iter()
            .map(|(start, end, id)| {
                let value = &sequence[start..end];
                // A fused run of unknowns is looked up as a whole, as the library does.
                let id = id.or_else(|| self.id_of(value)).unwrap_or(self.unk_id);
                Token::new(id, value.to_string(), (start, end))
            })
            .collect())
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.id_of(token)
    }

    fn id_to_token(&self, id: u32) -> Option<String> {
        ((id as usize) < self.scores.len()).then(|| self.piece(id).to_string())
    }

    fn get_vocab(&self) -> HashMap<String, u32> {
        self.sorted.iter().map(|&id| (self.piece(id).to_string(), id)).collect()
    }

    fn get_vocab_size(&self) -> usize {
        self.scores.len()
    }

    fn save(&self, _folder: &Path, _prefix: Option<&str>) -> tokenizers::Result<Vec<PathBuf>> {
        Err("the compact Unigram model is read from tokenizer.json and not saved on its own".into())
    }

    fn get_trainer(&self) -> UnigramTrainer {
        UnigramTrainer::default()
    }
}

#[derive(Deserialize)]
struct TokenizerFile {
    #[serde(default)]
    added_tokens: Vec<AddedTokenEntry>,
    normalizer: Option<NormalizerWrapper>,
    pre_tokenizer: Option<PreTokenizerWrapper>,
    post_processor: Option<PostProcessorWrapper>,
    decoder: Option<DecoderWrapper>,
    model: UnigramEntry,
}

#[derive(Deserialize)]
struct AddedTokenEntry {
    content: String,
    #[serde(default)]
    single_word: bool,
    #[serde(default)]
    lstrip: bool,
    #[serde(default)]
    rstrip: bool,
    #[serde(default)]
    normalized: bool,
    #[serde(default)]
    special: bool,
}

#[derive(Deserialize)]
struct UnigramEntry {
    unk_id: Option<usize>,
    vocab: Vec<(String, f64)>,
    #[serde(default)]
    byte_fallback: bool,
}

#[derive(Deserialize)]
struct ModelKind {
    model: KindOnly,
}

#[derive(Deserialize)]
struct KindOnly {
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// The tokenizer of `path` on the compact model when its model is a Unigram with an unknown
/// piece and no byte fallback; `None` for any other model (the caller loads the library's).
pub fn load(path: &Path) -> Result<Option<UnigramTokenizer>> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::io("reading", path, e))?;
    let kind: ModelKind = serde_json::from_slice(&bytes).map_err(|e| ModelError::format(path, e.to_string()))?;
    if kind.model.kind.as_deref() != Some("Unigram") {
        return Ok(None);
    }
    let file: TokenizerFile = serde_json::from_slice(&bytes).map_err(|e| ModelError::format(path, e.to_string()))?;
    drop(bytes);
    let (Some(unk_id), false) = (file.model.unk_id, file.model.byte_fallback) else {
        return Ok(None);
    };
    let model = CompactUnigram::new(&file.model.vocab, unk_id).map_err(|e| ModelError::format(path, e))?;
    drop(file.model.vocab);
    let mut tokenizer = TokenizerImpl::new(model);
    tokenizer
        .with_normalizer(file.normalizer)
        .with_pre_tokenizer(file.pre_tokenizer)
        .with_post_processor(file.post_processor)
        .with_decoder(file.decoder);
    let (special, plain): (Vec<AddedToken>, Vec<AddedToken>) = file
        .added_tokens
        .into_iter()
        .map(|t| {
            AddedToken::from(t.content, t.special).single_word(t.single_word).lstrip(t.lstrip).rstrip(t.rstrip).normalized(t.normalized)
        })
        .partition(|t| t.special);
    tokenizer.add_special_tokens(&special);
    tokenizer.add_tokens(&plain);
    Ok(Some(tokenizer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> Vec<(String, f64)> {
        [("<unk>", 0.0), ("▁", -2.0), ("社保", -3.0), ("社", -4.0), ("保", -4.0), ("卡", -3.5), ("社保卡", -5.0), ("a", -6.0), ("ab", -6.5), ("保", -1.0)]
            .into_iter()
            .map(|(p, s)| (p.to_string(), s))
            .collect()
    }

    #[test]
    fn prefixes_are_found_shortest_first_and_duplicates_keep_the_last_id() {
        let m = CompactUnigram::new(&vocab(), 0).unwrap();
        let mut out = Vec::new();
        m.prefixes("社保卡补办".as_bytes(), &mut out);
        assert_eq!(out, vec![(3, 3), (2, 6), (6, 9)]);
        m.prefixes("abc".as_bytes(), &mut out);
        assert_eq!(out, vec![(7, 1), (8, 2)]);
        m.prefixes("zz".as_bytes(), &mut out);
        assert!(out.is_empty());
        assert_eq!(m.token_to_id("保"), Some(9), "the later of two equal spellings, as the library's map keeps");
        assert_eq!(m.id_to_token(6).as_deref(), Some("社保卡"));
        assert_eq!(m.id_to_token(99), None);
        assert!(CompactUnigram::new(&vocab(), 10).is_err());
    }

    #[test]
    fn viterbi_picks_the_best_path_and_fuses_unknowns() {
        let m = CompactUnigram::new(&vocab(), 0).unwrap();
        // 社保卡 (-5) beats 社保 + 卡 (-6.5).
        let t = m.tokenize("社保卡").unwrap();
        assert_eq!(t.iter().map(|t| t.id).collect::<Vec<_>>(), vec![6]);
        // 社保 (-3) beats 社 + 保 (the later 保 scores -1: -5 in all).
        let t = m.tokenize("社保").unwrap();
        assert_eq!(t.iter().map(|t| t.id).collect::<Vec<_>>(), vec![2]);
        let t = m.tokenize("补办卡").unwrap();
        assert_eq!(t.iter().map(|t| (t.id, t.value.as_str(), t.offsets)).collect::<Vec<_>>(), vec![(0, "补办", (0, 6)), (5, "卡", (6, 9))]);
        assert!(m.tokenize("").unwrap().is_empty());
    }

    #[test]
    fn the_tiny_e5_tokenizer_matches_the_library_on_every_text() {
        let dir = tempfile::tempdir().unwrap();
        crate::fixtures::tiny_embedder_dir(dir.path()).unwrap();
        let path = dir.path().join("tokenizer.json");
        let ours = load(&path).unwrap().expect("the fixture's tokenizer is a Unigram");
        let library = tokenizers::Tokenizer::from_file(&path).unwrap();
        let texts = [
            "query: 社保卡怎么补办？",
            "passage: 第一条  为了规范  工伤保险，制定本条例。",
            "Hello World, 2025年 <s> inside </s> and <mask>!",
            "",
            "   ",
            "ＡＢＣ１２３ 全角",
            "😀 emoji ∑ 符号 \t tab\nnewline",
        ];
        for text in texts {
            let a = ours.encode(text, true).unwrap();
            let b = library.encode(text, true).unwrap();
            assert_eq!(a.get_ids(), b.get_ids(), "{text:?}");
            assert_eq!(a.get_offsets(), b.get_offsets(), "{text:?}");
        }
    }
}
