//! The e5 / BERT encoder on `xiaoguan-kernels`' int8 GEMM: every dense layer (Q/K/V, attention
//! output, intermediate, output) has its f32 weights quantized to Q8_0 once at load and its
//! activations quantized once per matmul, and the word embeddings are kept as int8 rows with a
//! scale per 32 values, so the model holds ≈4× less memory than in f32. The graph is
//! candle-transformers 0.11's `bert` (absolute positions, post-LayerNorm, GELU), op for op; only
//! the matmuls and the embedding table's storage change.

use crate::qwen2::PackedOp;
use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{LayerNorm, VarBuilder};
use candle_transformers::models::bert::{Config, HiddenAct};
use xiaoguan_kernels::{Isa, PackedMatrix};

/// Values per scale in the embedding table (as in Q8_0).
const EMBED_BLOCK: usize = 32;

enum Dense {
    Int8 { w: PackedMatrix, b: Tensor },
    /// A width the kernels do not take (not a multiple of 32): candle's f32 layer.
    F32(candle_nn::Linear),
}

impl Dense {
    fn load(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        let w = vb.get((out_dim, in_dim), "weight")?;
        let b = vb.get(out_dim, "bias")?;
        if in_dim % 32 != 0 {
            return Ok(Dense::F32(candle_nn::Linear::new(w, Some(b))));
        }
        let data: Vec<f32> = w.flatten_all()?.to_vec1()?;
        let w = PackedMatrix::from_f32(out_dim, in_dim, &data, Isa::best()).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        Ok(Dense::Int8 { w, b })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Dense::Int8 { w, b } => x.contiguous()?.apply_op1_no_bwd(&PackedOp(w))?.broadcast_add(b),
            Dense::F32(l) => l.forward(x),
        }
    }
}

/// The word-embedding table as int8 with one f32 scale per `EMBED_BLOCK` values of a row.
struct QuantizedTable {
    dim: usize,
    /// Values per scale: `EMBED_BLOCK`, or the whole row when the width is not a multiple of it.
    block: usize,
    values: Vec<i8>,
    scales: Vec<f32>,
}

impl QuantizedTable {
    fn new(table: &Tensor) -> Result<Self> {
        let (_, dim) = table.dims2()?;
        let data: Vec<f32> = table.flatten_all()?.to_vec1()?;
        Ok(Self::from_rows(dim, data.chunks_exact(dim).map(|r| r.to_vec())))
    }

    /// From the table's little-endian f32 bytes (a memory-mapped file), one row at a time, so
    /// loading never holds the f32 table in memory.
    fn from_f32_le(dim: usize, bytes: &[u8]) -> Self {
        Self::from_rows(dim, bytes.chunks_exact(dim * 4).map(|r| r.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()))
    }

    fn from_rows(dim: usize, rows: impl ExactSizeIterator<Item = Vec<f32>>) -> Self {
        let block = if dim % EMBED_BLOCK == 0 { EMBED_BLOCK } else { dim };
        let mut values = Vec::with_capacity(rows.len() * dim);
        let mut scales = Vec::with_capacity(rows.len() * dim / block);
        for row in rows {
            for block in row.chunks_exact(block) {
                let max = block.iter().fold(0f32, |m, v| m.max(v.abs()));
                let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
                scales.push(scale);
                values.extend(block.iter().map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8));
            }
        }
        Self { dim, block, values, scales }
    }

    fn rows(&self) -> usize {
        self.values.len() / self.dim
    }

    /// The rows of `ids`, dequantized, one after another.
    fn lookup(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(ids.len() * self.dim);
        for &id in ids {
            let id = id as usize;
            if id >= self.rows() {
                candle_core::bail!("token id {id} is outside the vocabulary ({} rows)", self.rows());
            }
            let row = &self.values[id * self.dim..(id + 1) * self.dim];
            let per_row = self.dim / self.block;
            let scales = &self.scales[id * per_row..(id + 1) * per_row];
            for (block, &s) in row.chunks_exact(self.block).zip(scales) {
                out.extend(block.iter().map(|&q| q as f32 * s));
            }
        }
        Ok(out)
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.values.len() + self.scales.len() * 4
    }
}

/// How a backend's encoder is named in benchmark reports: the kernels' ISA, or candle.
pub fn engine_name(backend: crate::qwen2::MatmulBackend) -> String {
    match backend {
        crate::qwen2::MatmulBackend::Int8 => format!("xiaoguan-int8-{}", Isa::best().name()),
        crate::qwen2::MatmulBackend::Candle => "xiaoguan-candle-f32".to_string(),
    }
}

struct Layer {
    query: Dense,
    key: Dense,
    value: Dense,
    attention_out: Dense,
    attention_norm: LayerNorm,
    intermediate: Dense,
    output: Dense,
    output_norm: LayerNorm,
}

pub struct Int8Bert {
    words: QuantizedTable,
    positions: Tensor,
    token_type0: Tensor,
    embeddings_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    head_dim: usize,
    act: HiddenAct,
    device: Device,
}

impl Int8Bert {
    /// Load from a safetensors file; the word-embedding table is quantized straight from the
    /// mapped file when it is stored as f32 (no f32 copy of its vocab × hidden values is made).
    pub fn load_file(weights: &std::path::Path, config: &Config, device: &Device) -> Result<Self> {
        // Safety: the file is memory-mapped read-only; pulled model folders are never modified in place.
        let file = unsafe { candle_core::safetensors::MmapedSafetensors::new(weights)? };
        let prefix = if file.get("embeddings.word_embeddings.weight").is_ok() { "" } else { "bert." };
        let words = {
            let view = file.get(&format!("{prefix}embeddings.word_embeddings.weight"))?;
            (view.dtype() == safetensors::Dtype::F32 && view.shape() == [config.vocab_size, config.hidden_size])
                .then(|| QuantizedTable::from_f32_le(config.hidden_size, view.data()))
        };
        let vb = VarBuilder::from_backend(Box::new(file), DType::F32, device.clone());
        let vb = if prefix.is_empty() { vb } else { vb.pp("bert") };
        Self::load(vb, config, words)
    }

    /// `vb` at the model's root; `words` the table already quantized (else read through `vb`).
    fn load(vb: VarBuilder, config: &Config, words: Option<QuantizedTable>) -> Result<Self> {
        let h = config.hidden_size;
        let e = vb.pp("embeddings");
        let words = match words {
            Some(w) => w,
            None => QuantizedTable::new(&e.get((config.vocab_size, h), "word_embeddings.weight")?)?,
        };
        let positions = e.get((config.max_position_embeddings, h), "position_embeddings.weight")?;
        let token_type0 = e.get((config.type_vocab_size, h), "token_type_embeddings.weight")?.narrow(0, 0, 1)?;
        let embeddings_norm = candle_nn::layer_norm(h, config.layer_norm_eps, e.pp("LayerNorm"))?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            let a = l.pp("attention");
            layers.push(Layer {
                query: Dense::load(h, h, a.pp("self.query"))?,
                key: Dense::load(h, h, a.pp("self.key"))?,
                value: Dense::load(h, h, a.pp("self.value"))?,
                attention_out: Dense::load(h, h, a.pp("output.dense"))?,
                attention_norm: candle_nn::layer_norm(h, config.layer_norm_eps, a.pp("output.LayerNorm"))?,
                intermediate: Dense::load(h, config.intermediate_size, l.pp("intermediate.dense"))?,
                output: Dense::load(config.intermediate_size, h, l.pp("output.dense"))?,
                output_norm: candle_nn::layer_norm(h, config.layer_norm_eps, l.pp("output.LayerNorm"))?,
            });
        }
        Ok(Self {
            words,
            positions,
            token_type0,
            embeddings_norm,
            layers,
            heads: config.num_attention_heads,
            head_dim: h / config.num_attention_heads,
            act: config.hidden_act,
            device: vb.device().clone(),
        })
    }

    /// Hidden states (n, len, h) of `ids` (n × len, padded) under `mask` (n × len, 1 = token).
    pub fn forward(&self, ids: &[u32], n: usize, len: usize, mask: &Tensor) -> Result<Tensor> {
        let h = self.positions.dim(1)?;
        let words = Tensor::from_vec(self.words.lookup(ids)?, (n, len, h), &self.device)?;
        let x = words.broadcast_add(&self.token_type0)?.broadcast_add(&self.positions.narrow(0, 0, len)?)?;
        let mut x = self.embeddings_norm.forward(&x)?;
        // (1 − mask) × f32::MIN over (n, 1, 1, len), as candle's BERT does.
        let mask = mask.unsqueeze(1)?.unsqueeze(1)?.to_dtype(DType::F32)?;
        let mask = (mask.ones_like()? - &mask)?.broadcast_mul(&Tensor::new(f32::MIN, &self.device)?)?;
        for layer in &self.layers {
            x = self.layer(layer, &x, &mask)?;
        }
        Ok(x)
    }

    fn heads_first(&self, x: &Tensor) -> Result<Tensor> {
        let (n, len, _) = x.dims3()?;
        x.reshape((n, len, self.heads, self.head_dim))?.transpose(1, 2)?.contiguous()
    }

    fn layer(&self, l: &Layer, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let q = self.heads_first(&l.query.forward(x)?)?;
        let k = self.heads_first(&l.key.forward(x)?)?;
        let v = self.heads_first(&l.value.forward(x)?)?;
        let scores = (q.matmul(&k.t()?)? / (self.head_dim as f64).sqrt())?.broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let context = probs.matmul(&v)?.transpose(1, 2)?.contiguous()?.flatten_from(D::Minus2)?;
        let attended = l.attention_norm.forward(&(l.attention_out.forward(&context)? + x)?)?;
        let inner = l.intermediate.forward(&attended)?;
        let inner = match self.act {
            HiddenAct::Gelu => inner.gelu_erf()?,
            HiddenAct::GeluApproximate => inner.gelu()?,
            HiddenAct::Relu => inner.relu()?,
        };
        l.output_norm.forward(&(l.output.forward(&inner)? + attended)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedding_table_round_trips_within_a_quantization_step() {
        let data: Vec<f32> = (0..4 * 64).map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0).collect();
        let t = Tensor::from_vec(data.clone(), (4, 64), &Device::Cpu).unwrap();
        let q = QuantizedTable::new(&t).unwrap();
        assert_eq!(q.rows(), 4);
        let back = q.lookup(&[2, 0]).unwrap();
        for (i, (&got, &want)) in back[..64].iter().zip(&data[128..192]).chain(back[64..].iter().zip(&data[..64])).enumerate() {
            assert!((got - want).abs() <= 50.0 / 17.0 / 127.0 * 0.51 + 1e-6, "value {i}: {got} vs {want}");
        }
        assert!(q.lookup(&[4]).is_err(), "an id outside the vocabulary is an error, not a panic");
        let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        let from_bytes = QuantizedTable::from_f32_le(64, &bytes);
        assert_eq!((from_bytes.values.clone(), from_bytes.scales.clone()), (q.values.clone(), q.scales.clone()), "the mapped-bytes path quantizes alike");
        assert_eq!(q.bytes(), 4 * 64 + 4 * 2 * 4);
        // A width that is not a multiple of the block: one scale per row.
        let t = Tensor::from_vec(data[..3 * 40].to_vec(), (3, 40), &Device::Cpu).unwrap();
        let q = QuantizedTable::new(&t).unwrap();
        assert_eq!((q.block, q.scales.len()), (40, 3));
        let back = q.lookup(&[1]).unwrap();
        assert!(back.iter().zip(&data[40..80]).all(|(a, b)| (a - b).abs() < 0.02), "{back:?}");
    }
}
