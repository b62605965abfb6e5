//! Quantized Qwen2 whose linear layers (Q/K/V, O, gate/up/down, lm_head) run on
//! `xiaoguan-kernels`' int8 GEMM/GEMV instead of candle's per-row `QMatMul`.
//!
//! The graph is candle-transformers 0.11's `quantized_qwen2` (RMSNorm, RoPE, GQA attention with a
//! KV cache, SiLU MLP), kept op for op so that greedy output stays what it was: only the
//! matmuls change, and they compute the same integer block dots as candle's Q8_0 path (same
//! activation quantization), summed in a different f32 order. Each weight is repacked once at
//! load; tensors in a format the kernels do not take stay on candle's `QMatMul`.

use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{CpuStorage, CustomOp1, DType, Device, IndexOp, Layout, Module, Result, Shape, Tensor};
use candle_nn::Embedding;
use candle_transformers::quantized_nn::RmsNorm;
use candle_transformers::utils::repeat_kv;
use std::collections::HashMap;
use xiaoguan_kernels::{GgmlFormat, Isa, PackedMatrix};

/// Which implementation the linear layers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatmulBackend {
    /// `xiaoguan-kernels` (int8 GEMM for prefill, GEMV for decode) on `Isa::best()`.
    Int8,
    /// candle's `QMatMul` (the previous path; kept for comparison).
    Candle,
}

impl MatmulBackend {
    /// `XIAOGUAN_MATMUL=candle` selects candle's path; anything else the int8 kernels.
    pub fn from_env() -> Self {
        match std::env::var("XIAOGUAN_MATMUL") {
            Ok(v) if v.eq_ignore_ascii_case("candle") => MatmulBackend::Candle,
            _ => MatmulBackend::Int8,
        }
    }
}

fn kernel_format(dt: GgmlDType) -> Option<GgmlFormat> {
    Some(match dt {
        GgmlDType::Q8_0 => GgmlFormat::Q8_0,
        GgmlDType::Q4_0 => GgmlFormat::Q4_0,
        GgmlDType::Q4K => GgmlFormat::Q4K,
        GgmlDType::Q6K => GgmlFormat::Q6K,
        _ => return None,
    })
}

pub(crate) struct PackedOp<'a>(pub(crate) &'a PackedMatrix);

impl CustomOp1 for PackedOp<'_> {
    fn name(&self) -> &'static str {
        "xiaoguan-int8-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = match storage {
            CpuStorage::F32(v) => v.as_slice(),
            _ => candle_core::bail!("int8 matmul takes f32 activations"),
        };
        let (a, b) = layout.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg("int8 matmul needs a contiguous input".into()))?;
        let x = &x[a..b];
        let dims = layout.shape().dims();
        let k = *dims.last().unwrap_or(&0);
        if k != self.0.k() {
            candle_core::bail!("int8 matmul: input has {k} features, the weight takes {}", self.0.k());
        }
        let m = x.len() / k;
        let n = self.0.n();
        let mut out = vec![0f32; m * n];
        xiaoguan_kernels::matmul(self.0, x, m, &mut out);
        let mut od = dims.to_vec();
        *od.last_mut().expect("rank >= 1") = n;
        Ok((CpuStorage::F32(out), Shape::from(od)))
    }
}

#[derive(Debug, Clone)]
enum Linear {
    Packed(PackedMatrix),
    Candle(QMatMul),
}

impl Linear {
    fn new(t: QTensor, backend: MatmulBackend) -> Result<Self> {
        if backend == MatmulBackend::Int8 {
            if let (Some(fmt), Ok((n, k))) = (kernel_format(t.dtype()), t.shape().dims2()) {
                if k % fmt.block().0 == 0 && t.device().is_cpu() {
                    let bytes = t.data()?;
                    let p = PackedMatrix::from_ggml(fmt, n, k, &bytes, Isa::best()).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
                    return Ok(Linear::Packed(p));
                }
            }
        }
        Ok(Linear::Candle(QMatMul::from_qtensor(t)?))
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Linear::Packed(p) if x.dtype() == DType::F32 && x.device().is_cpu() => x.contiguous()?.apply_op1_no_bwd(&PackedOp(p)),
            Linear::Packed(_) => candle_core::bail!("int8 matmul takes f32 CPU tensors"),
            Linear::Candle(q) => q.forward(x),
        }
    }
}

#[derive(Debug, Clone)]
struct Mlp {
    gate: Linear,
    down: Linear,
    up: Linear,
}

impl Mlp {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let w1 = self.gate.forward(xs)?;
        let w3 = self.up.forward(xs)?;
        self.down.forward(&(candle_nn::ops::silu(&w1)? * w3)?)
    }
}

#[derive(Debug, Clone)]
struct LayerWeights {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    bq: Tensor,
    bk: Tensor,
    bv: Tensor,
    wo: Linear,
    attention_norm: RmsNorm,
    mlp: Mlp,
    ffn_norm: RmsNorm,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    cos: Tensor,
    sin: Tensor,
    neg_inf: Tensor,
    kv_cache: Option<(Tensor, Tensor)>,
}

fn masked_fill(on_false: &Tensor, mask: &Tensor, on_true: &Tensor) -> Result<Tensor> {
    let shape = mask.shape();
    mask.where_cond(&on_true.broadcast_as(shape.dims())?, on_false)
}

impl LayerWeights {
    fn apply_rotary_emb(&self, x: &Tensor, index_pos: usize) -> Result<Tensor> {
        let (_b, _h, seq_len, _d) = x.dims4()?;
        let cos = self.cos.narrow(0, index_pos, seq_len)?;
        let sin = self.sin.narrow(0, index_pos, seq_len)?;
        candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin)
    }

    fn forward_attn(&mut self, x: &Tensor, mask: Option<&Tensor>, index_pos: usize) -> Result<Tensor> {
        let (b_sz, seq_len, n_embd) = x.dims3()?;
        let q = self.wq.forward(x)?.broadcast_add(&self.bq)?;
        let k = self.wk.forward(x)?.broadcast_add(&self.bk)?;
        let v = self.wv.forward(x)?.broadcast_add(&self.bv)?;
        let q = q.reshape((b_sz, seq_len, self.n_head, self.head_dim))?.transpose(1, 2)?.contiguous()?;
        let k = k.reshape((b_sz, seq_len, self.n_kv_head, self.head_dim))?.transpose(1, 2)?.contiguous()?;
        let v = v.reshape((b_sz, seq_len, self.n_kv_head, self.head_dim))?.transpose(1, 2)?.contiguous()?;
        let q = self.apply_rotary_emb(&q, index_pos)?;
        let k = self.apply_rotary_emb(&k, index_pos)?;
        let (k, v) = match &self.kv_cache {
            Some((kc, vc)) if index_pos != 0 => (Tensor::cat(&[kc, &k], 2)?, Tensor::cat(&[vc, &v], 2)?),
            _ => (k, v),
        };
        self.kv_cache = Some((k.clone(), v.clone()));
        let k = repeat_kv(k, self.n_head / self.n_kv_head)?;
        let v = repeat_kv(v, self.n_head / self.n_kv_head)?;
        let att = (q.matmul(&k.t()?)? / (self.head_dim as f64).sqrt())?;
        let att = match mask {
            None => att,
            Some(mask) => masked_fill(&att, &mask.broadcast_as(att.shape())?, &self.neg_inf)?,
        };
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        let y = att.matmul(&v.contiguous()?)?;
        let y = y.transpose(1, 2)?.reshape(&[b_sz, seq_len, n_embd])?;
        self.wo.forward(&y)
    }
}

pub struct Qwen2 {
    tok_embeddings: Embedding,
    layers: Vec<LayerWeights>,
    norm: RmsNorm,
    output: Linear,
    masks: HashMap<(usize, usize), Tensor>,
    backend: MatmulBackend,
}

fn freqs(head_dim: usize, freq_base: f32, context_length: usize, device: &Device) -> Result<(Tensor, Tensor)> {
    let theta: Vec<_> = (0..head_dim).step_by(2).map(|i| 1f32 / freq_base.powf(i as f32 / head_dim as f32)).collect();
    let theta = Tensor::new(theta.as_slice(), device)?;
    let idx_theta = Tensor::arange(0, context_length as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((context_length, 1))?
        .matmul(&theta.reshape((1, theta.elem_count()))?)?;
    Ok((idx_theta.cos()?, idx_theta.sin()?))
}

impl Qwen2 {
    pub fn from_gguf<R: std::io::Seek + std::io::Read>(
        ct: gguf_file::Content,
        reader: &mut R,
        device: &Device,
        backend: MatmulBackend,
    ) -> Result<Self> {
        let md = |s: &str| match ct.metadata.get(s) {
            None => candle_core::bail!("cannot find {s} in metadata"),
            Some(v) => Ok(v),
        };
        let head_count = md("qwen2.attention.head_count")?.to_u32()? as usize;
        let head_count_kv = md("qwen2.attention.head_count_kv")?.to_u32()? as usize;
        let embedding_length = md("qwen2.embedding_length")?.to_u32()? as usize;
        let context_length = md("qwen2.context_length")?.to_u32()? as usize;
        let block_count = md("qwen2.block_count")?.to_u32()? as usize;
        let rms_norm_eps = md("qwen2.attention.layer_norm_rms_epsilon")?.to_f32()? as f64;
        let rope_freq_base = md("qwen2.rope.freq_base").and_then(|m| m.to_f32()).unwrap_or(10000f32);
        let head_dim = embedding_length / head_count;
        let neg_inf = Tensor::new(f32::NEG_INFINITY, device)?;

        let tok = ct.tensor(reader, "token_embd.weight", device)?;
        let tok_embeddings = tok.dequantize(device)?;
        let norm = RmsNorm::from_qtensor(ct.tensor(reader, "output_norm.weight", device)?, rms_norm_eps)?;
        let output = match ct.tensor(reader, "output.weight", device) {
            Ok(v) => Linear::new(v, backend)?,
            // Tied embeddings.
            _ => Linear::new(tok, backend)?,
        };
        let (cos, sin) = freqs(head_dim, rope_freq_base, context_length, device)?;
        let mut layers = Vec::with_capacity(block_count);
        for i in 0..block_count {
            let p = format!("blk.{i}");
            let mut t = |name: &str| ct.tensor(reader, &format!("{p}.{name}"), device);
            let wq = Linear::new(t("attn_q.weight")?, backend)?;
            let wk = Linear::new(t("attn_k.weight")?, backend)?;
            let wv = Linear::new(t("attn_v.weight")?, backend)?;
            let bq = t("attn_q.bias")?.dequantize(device)?;
            let bk = t("attn_k.bias")?.dequantize(device)?;
            let bv = t("attn_v.bias")?.dequantize(device)?;
            let wo = Linear::new(t("attn_output.weight")?, backend)?;
            let mlp = Mlp {
                gate: Linear::new(t("ffn_gate.weight")?, backend)?,
                down: Linear::new(t("ffn_down.weight")?, backend)?,
                up: Linear::new(t("ffn_up.weight")?, backend)?,
            };
            let attention_norm = RmsNorm::from_qtensor(t("attn_norm.weight")?, rms_norm_eps)?;
            let ffn_norm = RmsNorm::from_qtensor(t("ffn_norm.weight")?, rms_norm_eps)?;
            layers.push(LayerWeights {
                wq,
                wk,
                wv,
                bq,
                bk,
                bv,
                wo,
                attention_norm,
                mlp,
                ffn_norm,
                n_head: head_count,
                n_kv_head: head_count_kv,
                head_dim,
                cos: cos.clone(),
                sin: sin.clone(),
                neg_inf: neg_inf.clone(),
                kv_cache: None,
            });
        }
        Ok(Self { tok_embeddings: Embedding::new(tok_embeddings, embedding_length), layers, norm, output, masks: HashMap::new(), backend })
    }

    pub fn backend(&self) -> MatmulBackend {
        self.backend
    }

    /// The kernel path the packed layers run (`None` on candle's backend).
    pub fn isa(&self) -> Option<Isa> {
        match &self.output {
            Linear::Packed(p) => Some(p.isa()),
            Linear::Candle(_) => self.layers.first().and_then(|l| match &l.wq {
                Linear::Packed(p) => Some(p.isa()),
                Linear::Candle(_) => None,
            }),
        }
    }

    fn mask(&mut self, seq_len: usize, index_pos: usize, device: &Device) -> Result<Tensor> {
        let key = (seq_len, index_pos + seq_len);
        if let Some(m) = self.masks.get(&key) {
            return Ok(m.clone());
        }
        let m = candle_transformers::utils::build_causal_mask(seq_len, index_pos, device)?;
        self.masks.insert(key, m.clone());
        Ok(m)
    }

    pub fn clear_kv_cache(&mut self) {
        for l in self.layers.iter_mut() {
            l.kv_cache = None;
        }
    }

    /// Logits of the last position, `[batch, vocab]`.
    pub fn forward(&mut self, x: &Tensor, index_pos: usize) -> Result<Tensor> {
        let (_b, seq_len) = x.dims2()?;
        let mask = if seq_len == 1 { None } else { Some(self.mask(seq_len, index_pos, x.device())?) };
        let mut h = self.tok_embeddings.forward(x)?;
        for layer in self.layers.iter_mut() {
            let residual = &h;
            let x = layer.attention_norm.forward(&h)?;
            let attn = layer.forward_attn(&x, mask.as_ref(), index_pos)?;
            let x = (attn + residual)?;
            let residual = &x;
            let y = layer.mlp.forward(&layer.ffn_norm.forward(&x)?)?;
            h = (y + residual)?;
        }
        let x = self.norm.forward(&h)?;
        let x = x.i((.., seq_len - 1, ..))?;
        self.output.forward(&x)
    }
}
