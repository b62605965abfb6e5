//! Text embedding: the `Embedder` trait and a candle BERT implementation (e5, m3e).
//!
//! Texts are sorted by token length and embedded in batches of similar length (little
//! padding), truncated at the model's max positions, mean- or CLS-pooled and L2-normalized.

use crate::error::{ModelError, Result};
use crate::manifest::{EmbedFacts, Pooling};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use std::path::Path;
use tokenizers::Tokenizer;

/// Whether a text is a search query or a stored passage (e5 embeds them with different prefixes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    Query,
    Passage,
}

pub trait Embedder: Send + Sync {
    fn model_id(&self) -> &str;
    fn dimension(&self) -> usize;
    /// One L2-normalized vector per text, in input order.
    fn embed(&self, texts: &[&str], kind: TextKind) -> Result<Vec<Vec<f32>>>;
    /// Tokens the model sees for `text` (prefix and specials included, before truncation).
    fn count_tokens(&self, text: &str, kind: TextKind) -> Result<usize>;
}

/// The tokenizer: a Unigram vocabulary on the compact model (a few MB instead of ≈330 MB), any
/// other model (WordPiece) on the library's.
enum TextTokenizer {
    Compact(crate::unigram::UnigramTokenizer),
    Library(Tokenizer),
}

impl TextTokenizer {
    fn load(path: &Path) -> Result<Self> {
        match crate::unigram::load(path)? {
            Some(t) => Ok(Self::Compact(t)),
            None => Tokenizer::from_file(path).map(Self::Library).map_err(|e| ModelError::format(path, e.to_string())),
        }
    }

    fn encode(&self, text: String) -> tokenizers::Result<tokenizers::Encoding> {
        match self {
            Self::Compact(t) => t.encode(text, true),
            Self::Library(t) => t.encode(text, true),
        }
    }
}

/// The encoder's implementation (`XIAOGUAN_MATMUL=candle` selects candle's f32 BERT).
enum Encoder {
    Int8(crate::bert::Int8Bert),
    Candle(BertModel),
}

pub struct BertEmbedder {
    id: String,
    facts: EmbedFacts,
    model: Encoder,
    tokenizer: TextTokenizer,
    pad_id: u32,
    /// Upper bound on padded tokens per forward pass (keeps memory flat for long inputs).
    batch_tokens: usize,
    device: Device,
}

impl BertEmbedder {
    /// Load `model.safetensors`, `config.json` and `tokenizer.json` from a pulled model folder.
    /// The int8 encoder unless `XIAOGUAN_MATMUL=candle`.
    pub fn load(dir: &Path, id: &str, facts: &EmbedFacts) -> Result<Self> {
        Self::load_with(dir, id, facts, crate::qwen2::MatmulBackend::from_env())
    }

    pub fn load_with(dir: &Path, id: &str, facts: &EmbedFacts, backend: crate::qwen2::MatmulBackend) -> Result<Self> {
        let device = Device::Cpu;
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path).map_err(|e| ModelError::io("reading", &config_path, e))?;
        let config: BertConfig =
            serde_json::from_str(&text).map_err(|e| ModelError::format(&config_path, format!("not a BERT config: {e}")))?;
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = TextTokenizer::load(&tok_path)?;
        let weights = dir.join("model.safetensors");
        if !weights.exists() {
            return Err(ModelError::format(&weights, "missing"));
        }
        let model = match backend {
            crate::qwen2::MatmulBackend::Int8 => crate::bert::Int8Bert::load_file(&weights, &config, &device).map(Encoder::Int8),
            crate::qwen2::MatmulBackend::Candle => {
                // Safety: the file is memory-mapped read-only; pulled model folders are never modified in place.
                unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &device) }.and_then(|vb| BertModel::load(vb, &config)).map(Encoder::Candle)
            }
        }
        .map_err(|e| ModelError::format(&weights, format!("loading BERT: {e}")))?;
        let max = facts.max_tokens.min(config.max_position_embeddings);
        let facts = EmbedFacts { max_tokens: max, ..facts.clone() };
        Ok(Self {
            id: id.to_string(),
            facts,
            model,
            tokenizer,
            pad_id: config.pad_token_id as u32,
            batch_tokens: 8192,
            device,
        })
    }

    fn prefixed(&self, text: &str, kind: TextKind) -> String {
        let prefix = match kind {
            TextKind::Query => &self.facts.query_prefix,
            TextKind::Passage => &self.facts.passage_prefix,
        };
        format!("{prefix}{text}")
    }

    fn encode(&self, text: &str, kind: TextKind) -> Result<tokenizers::Encoding> {
        self.tokenizer
            .encode(self.prefixed(text, kind))
            .map_err(|e| ModelError::Inference(format!("tokenizing: {e}")))
    }

    /// Token ids as the model sees them (prefixed, with specials, truncated keeping the final special).
    pub fn token_ids(&self, text: &str, kind: TextKind) -> Result<Vec<u32>> {
        let mut ids = self.encode(text, kind)?.get_ids().to_vec();
        let max = self.facts.max_tokens;
        if ids.len() > max {
            let last = *ids.last().expect("non-empty");
            ids.truncate(max - 1);
            ids.push(last);
        }
        Ok(ids)
    }

    fn forward_batch(&self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let len = batch.iter().map(Vec::len).max().unwrap_or(0);
        let n = batch.len();
        let mut ids = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        for seq in batch {
            ids.extend_from_slice(seq);
            ids.extend(std::iter::repeat_n(self.pad_id, len - seq.len()));
            mask.extend(std::iter::repeat_n(1u32, seq.len()));
            mask.extend(std::iter::repeat_n(0u32, len - seq.len()));
        }
        let mask = Tensor::from_vec(mask, (n, len), &self.device)?;
        let hidden = match &self.model {
            Encoder::Int8(m) => m.forward(&ids, n, len, &mask)?,
            Encoder::Candle(m) => {
                let ids = Tensor::from_vec(ids, (n, len), &self.device)?;
                m.forward(&ids, &ids.zeros_like()?, Some(&mask))?
            }
        }; // (n, len, h)
        let pooled = match self.facts.pooling {
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Mean => {
                let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
                let sum = hidden.broadcast_mul(&m)?.sum(1)?;
                sum.broadcast_div(&m.sum(1)?)?
            }
        };
        let pooled = if self.facts.normalize {
            let norm = pooled.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
            pooled.broadcast_div(&norm)?
        } else {
            pooled
        };
        Ok(pooled.to_vec2::<f32>()?)
    }
}

impl Embedder for BertEmbedder {
    fn model_id(&self) -> &str {
        &self.id
    }
    fn dimension(&self) -> usize {
        self.facts.dimension
    }

    fn embed(&self, texts: &[&str], kind: TextKind) -> Result<Vec<Vec<f32>>> {
        let seqs: Vec<Vec<u32>> = texts.iter().map(|t| self.token_ids(t, kind)).collect::<Result<_>>()?;
        // Longest first, so each batch pads to a similar length.
        let mut order: Vec<usize> = (0..seqs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(seqs[i].len()));
        let mut out = vec![Vec::new(); seqs.len()];
        let mut start = 0;
        while start < order.len() {
            let width = seqs[order[start]].len().max(1);
            let cap = (self.batch_tokens / width).clamp(1, 64).min(order.len() - start);
            // Stop the batch where padding would exceed a third of a text's length.
            let take = (1..cap).find(|&k| seqs[order[start + k]].len() * 3 < width * 2).unwrap_or(cap);
            let batch: Vec<Vec<u32>> = order[start..start + take].iter().map(|&i| seqs[i].clone()).collect();
            for (k, v) in self.forward_batch(&batch)?.into_iter().enumerate() {
                out[order[start + k]] = v;
            }
            start += take;
        }
        Ok(out)
    }

    fn count_tokens(&self, text: &str, kind: TextKind) -> Result<usize> {
        Ok(self.encode(text, kind)?.len())
    }
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb).max(1e-12)
}

/// Whether candle was compiled with AVX kernels (needs `-C target-cpu=x86-64-v3` or similar).
pub fn kernels_use_avx() -> bool {
    candle_core::utils::with_avx()
}
