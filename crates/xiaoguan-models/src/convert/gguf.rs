//! Assembled GGUF → `model.gguf` (slow tensor types requantized) + `tokenizer.json` built from
//! the GGUF's own tokenizer metadata (gpt2-style byte-level BPE with the Qwen2 split regex).

use crate::error::{ModelError, Result};
use crate::manifest::Requantize;
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Device;
use std::path::Path;

/// The pre-tokenizer split of Qwen2's tokenizer (`tokenizer.ggml.pre = "qwen2"`).
pub const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

pub fn parse_dtype(name: &str) -> Option<GgmlDType> {
    Some(match name.to_ascii_lowercase().as_str() {
        "f32" => GgmlDType::F32,
        "f16" => GgmlDType::F16,
        "q4_0" => GgmlDType::Q4_0,
        "q4_1" => GgmlDType::Q4_1,
        "q5_0" => GgmlDType::Q5_0,
        "q5_1" => GgmlDType::Q5_1,
        "q8_0" => GgmlDType::Q8_0,
        "q4_k" => GgmlDType::Q4K,
        "q5_k" => GgmlDType::Q5K,
        "q6_k" => GgmlDType::Q6K,
        _ => return None,
    })
}

fn open(path: &Path) -> Result<(std::io::BufReader<std::fs::File>, gguf_file::Content)> {
    let f = std::fs::File::open(path).map_err(|e| ModelError::io("opening", path, e))?;
    let mut r = std::io::BufReader::new(f);
    let content = gguf_file::Content::read(&mut r).map_err(|e| ModelError::format(path, format!("not a GGUF file: {e}")))?;
    Ok((r, content))
}

/// Turn `raw` (the concatenated parts, removed afterwards) into `out/model.gguf` + `out/tokenizer.json`.
pub fn prepare(raw: &Path, out: &Path, rules: &[Requantize], verbose: bool) -> Result<()> {
    let mut plan = Vec::new();
    for rule in rules {
        let from = parse_dtype(&rule.from).ok_or_else(|| ModelError::format(raw, format!("unknown type {}", rule.from)))?;
        let to = parse_dtype(&rule.to).ok_or_else(|| ModelError::format(raw, format!("unknown type {}", rule.to)))?;
        plan.push((from, to));
    }
    let (mut reader, content) = open(raw)?;
    let tokenizer = tokenizer_json(&content).map_err(|m| ModelError::format(raw, m))?;
    let tok_path = out.join("tokenizer.json");
    std::fs::write(&tok_path, serde_json::to_string(&tokenizer).expect("json"))
        .map_err(|e| ModelError::io("writing", &tok_path, e))?;

    let target = out.join("model.gguf");
    let needs = content.tensor_infos.values().any(|t| plan.iter().any(|(from, _)| *from == t.ggml_dtype));
    if !needs {
        drop(reader);
        return std::fs::rename(raw, &target).map_err(|e| ModelError::io("moving", &target, e));
    }
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort_by_key(|n| content.tensor_infos[*n].offset);
    let bar = if verbose { indicatif::ProgressBar::new(names.len() as u64) } else { indicatif::ProgressBar::hidden() };
    bar.set_message("requantize");
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(names.len());
    let mut converted = 0;
    for name in names {
        let t = content.tensor(&mut reader, name, &Device::Cpu).map_err(|e| ModelError::format(raw, format!("tensor {name}: {e}")))?;
        let rule = plan.iter().find(|(from, _)| *from == t.dtype());
        let t = match rule {
            Some((_, to)) => {
                converted += 1;
                let f = t.dequantize(&Device::Cpu)?;
                QTensor::quantize(&f, *to)?
            }
            None => t,
        };
        tensors.push((name.clone(), t));
        bar.inc(1);
    }
    bar.finish_and_clear();
    if verbose {
        eprintln!("requantized {converted} of {} tensors", tensors.len());
    }
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .filter(|(k, _)| k.as_str() != "general.alignment") // the writer aligns to 32 bytes itself
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let tmp = out.join("model.gguf.partial");
    {
        let f = std::fs::File::create(&tmp).map_err(|e| ModelError::io("creating", &tmp, e))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        gguf_file::write(&mut w, &metadata, &refs).map_err(|e| ModelError::format(&tmp, format!("writing GGUF: {e}")))?;
        let f = w.into_inner().map_err(|e| ModelError::io("writing", &tmp, e.into_error()))?;
        f.sync_all().map_err(|e| ModelError::io("syncing", &tmp, e))?;
    }
    std::fs::rename(&tmp, &target).map_err(|e| ModelError::io("moving", &target, e))?;
    drop(reader);
    std::fs::remove_file(raw).map_err(|e| ModelError::io("removing", raw, e))
}

fn strings(content: &gguf_file::Content, key: &str) -> std::result::Result<Vec<String>, String> {
    match content.metadata.get(key) {
        Some(gguf_file::Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                gguf_file::Value::String(s) => Ok(s.clone()),
                other => Err(format!("{key}: expected strings, found {other:?}")),
            })
            .collect(),
        Some(_) => Err(format!("{key} is not an array")),
        None => Err(format!("missing {key}")),
    }
}

fn token_types(content: &gguf_file::Content, n: usize) -> Vec<i64> {
    match content.metadata.get("tokenizer.ggml.token_type") {
        Some(gguf_file::Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                gguf_file::Value::I32(x) => *x as i64,
                gguf_file::Value::U32(x) => *x as i64,
                gguf_file::Value::I8(x) => *x as i64,
                gguf_file::Value::U8(x) => *x as i64,
                _ => 1,
            })
            .collect(),
        _ => vec![1; n],
    }
}

/// tokenizer.json (as JSON) for a gpt2-style GGUF tokenizer. Control (3) and user-defined (4)
/// tokens become added tokens so they are never split; control tokens are special.
pub fn tokenizer_json(content: &gguf_file::Content) -> std::result::Result<serde_json::Value, String> {
    let model = content.metadata.get("tokenizer.ggml.model").and_then(|v| v.to_string().ok()).cloned();
    if model.as_deref() != Some("gpt2") {
        return Err(format!("tokenizer.ggml.model is {model:?}; only gpt2-style byte-level BPE is supported"));
    }
    let pre = content.metadata.get("tokenizer.ggml.pre").and_then(|v| v.to_string().ok()).cloned();
    if !matches!(pre.as_deref(), None | Some("qwen2")) {
        return Err(format!("tokenizer.ggml.pre is {pre:?}; only qwen2 is supported"));
    }
    let tokens = strings(content, "tokenizer.ggml.tokens")?;
    let merges = strings(content, "tokenizer.ggml.merges")?;
    let types = token_types(content, tokens.len());
    let mut vocab = serde_json::Map::new();
    let mut added = Vec::new();
    for (id, tok) in tokens.iter().enumerate() {
        vocab.insert(tok.clone(), serde_json::json!(id));
        let ty = types.get(id).copied().unwrap_or(1);
        if ty == 3 || ty == 4 {
            added.push(serde_json::json!({
                "id": id, "content": tok, "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": false, "special": ty == 3,
            }));
        }
    }
    let byte_level = serde_json::json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false});
    Ok(serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": false},
            byte_level,
        ]},
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges,
        },
    }))
}
