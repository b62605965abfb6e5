//! Text generation: the `Generator` trait and a candle quantized-Qwen2 implementation.
//!
//! Decoding is greedy by default (same prompt → same answer), with seeded sampling as an
//! option. Text reaches the caller as deltas that never split a UTF-8 character; the caller can
//! stop generation by returning `false` from the callback or by setting the cancel flag.

use crate::error::{ModelError, Result};
use crate::manifest::{ChatTemplate, GenerateFacts};
use crate::qwen2::{MatmulBackend, Qwen2};
use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokenizers::Tokenizer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self { role, content: content.into() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decoding {
    /// Always the most likely token: deterministic.
    Greedy,
    /// Temperature + nucleus sampling with a fixed seed: reproducible for the same seed.
    Sample { seed: u64, temperature: f64, top_p: f64 },
}

#[derive(Debug, Clone)]
pub struct GenerateParams {
    pub max_new_tokens: usize,
    pub decoding: Decoding,
    /// Penalty (> 1 discourages) on tokens seen in the last `repeat_last_n` tokens; 1.0 disables.
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
    pub cancel: Option<Arc<AtomicBool>>,
    /// Keep going past stop tokens (benchmarks that need a fixed number of decode steps).
    pub ignore_stop: bool,
}

impl Default for GenerateParams {
    fn default() -> Self {
        Self { max_new_tokens: 256, decoding: Decoding::Greedy, repeat_penalty: 1.1, repeat_last_n: 64, cancel: None, ignore_stop: false }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// A stop token was produced.
    Stop,
    /// `max_new_tokens` or the context length was reached.
    Length,
    /// The caller stopped it.
    Cancelled,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    /// Prompt processed and first token chosen.
    pub time_to_first_token_ms: f64,
    pub stop_reason: StopReason,
}

impl GenerationStats {
    pub fn prefill_tokens_per_sec(&self) -> f64 {
        self.prompt_tokens as f64 / (self.prefill_ms / 1e3).max(1e-9)
    }
    pub fn decode_tokens_per_sec(&self) -> f64 {
        // The first token comes out of prefill; decode covers the rest.
        self.generated_tokens.saturating_sub(1) as f64 / (self.decode_ms / 1e3).max(1e-9)
    }
}

#[derive(Debug, Clone)]
pub struct Generation {
    pub text: String,
    pub stats: GenerationStats,
}

pub trait Generator: Send + Sync {
    fn model_id(&self) -> &str;
    fn context_length(&self) -> usize;
    fn count_tokens(&self, text: &str) -> Result<usize>;
    /// The prompt text the chat template makes of `messages`.
    fn render(&self, messages: &[ChatMessage]) -> Result<String>;
    /// Generate a reply; `on_delta` receives each new piece of text and returns false to stop.
    fn generate(
        &self,
        messages: &[ChatMessage],
        params: &GenerateParams,
        on_delta: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation>;
}

/// Render a conversation with a literal-piece chat template (see `ChatTemplate`).
pub fn render_chat(template: &ChatTemplate, messages: &[ChatMessage]) -> Result<String> {
    if messages.is_empty() {
        return Err(ModelError::InvalidInput("a conversation needs at least one message".into()));
    }
    let mut out = String::new();
    if messages[0].role != Role::System {
        if let Some(sys) = &template.default_system {
            out.push_str(&template.system.replace("{content}", sys));
        }
    }
    for (i, m) in messages.iter().enumerate() {
        if m.role == Role::System && i != 0 {
            return Err(ModelError::InvalidInput("a system message may only come first".into()));
        }
        let piece = match m.role {
            Role::System => &template.system,
            Role::User => &template.user,
            Role::Assistant => &template.assistant,
        };
        out.push_str(&piece.replace("{content}", &m.content));
    }
    if messages.last().map(|m| m.role) == Some(Role::Assistant) {
        return Err(ModelError::InvalidInput("the last message must not be the assistant's".into()));
    }
    out.push_str(&template.generation_prompt);
    Ok(out)
}

/// Turns a growing list of token ids into text deltas that never split a UTF-8 character:
/// the whole suffix is decoded each time and released only when it does not end in U+FFFD.
pub struct Utf8Stream<'a> {
    tokenizer: &'a Tokenizer,
    tokens: Vec<u32>,
    emitted: usize,
}

impl<'a> Utf8Stream<'a> {
    pub fn new(tokenizer: &'a Tokenizer) -> Self {
        Self { tokenizer, tokens: Vec::new(), emitted: 0 }
    }

    pub fn push(&mut self, token: u32) -> Result<Option<String>> {
        self.tokens.push(token);
        let text = self.decode()?;
        if text.ends_with('\u{FFFD}') || text.len() <= self.emitted {
            return Ok(None);
        }
        let delta = text[self.emitted..].to_string();
        self.emitted = text.len();
        Ok(Some(delta))
    }

    /// Whatever is left at the end (an incomplete character is released as is).
    pub fn finish(&mut self) -> Result<Option<String>> {
        let text = self.decode()?;
        if text.len() > self.emitted {
            let delta = text[self.emitted..].to_string();
            self.emitted = text.len();
            return Ok(Some(delta));
        }
        Ok(None)
    }

    fn decode(&self) -> Result<String> {
        self.tokenizer.decode(&self.tokens, true).map_err(|e| ModelError::Inference(format!("decoding: {e}")))
    }
}

pub struct QwenGenerator {
    id: String,
    facts: GenerateFacts,
    model: Mutex<Qwen2>,
    tokenizer: Tokenizer,
    stop_ids: Vec<u32>,
    device: Device,
}

impl QwenGenerator {
    /// Load `model.gguf` and `tokenizer.json` from a pulled model folder. The linear layers run
    /// on the int8 kernels (`XIAOGUAN_MATMUL=candle` for candle's `QMatMul`).
    pub fn load(dir: &Path, id: &str, facts: &GenerateFacts) -> Result<Self> {
        Self::load_with(dir, id, facts, MatmulBackend::from_env())
    }

    /// As `load`, with the matmul backend chosen by the caller.
    pub fn load_with(dir: &Path, id: &str, facts: &GenerateFacts, backend: MatmulBackend) -> Result<Self> {
        let device = Device::Cpu;
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| ModelError::format(&tok_path, e.to_string()))?;
        let path = dir.join("model.gguf");
        let file = std::fs::File::open(&path).map_err(|e| ModelError::io("opening", &path, e))?;
        let mut reader = std::io::BufReader::new(file);
        let content = gguf_file::Content::read(&mut reader).map_err(|e| ModelError::format(&path, format!("not a GGUF file: {e}")))?;
        let model = Qwen2::from_gguf(content, &mut reader, &device, backend)
            .map_err(|e| ModelError::format(&path, format!("not a Qwen2 GGUF: {e}")))?;
        let mut stop_ids = Vec::new();
        for t in &facts.stop_tokens {
            let id = tokenizer
                .token_to_id(t)
                .ok_or_else(|| ModelError::format(&tok_path, format!("stop token {t:?} is not in the vocabulary")))?;
            stop_ids.push(id);
        }
        Ok(Self { id: id.to_string(), facts: facts.clone(), model: Mutex::new(model), tokenizer, stop_ids, device })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The matmul backend and, on the int8 one, the kernel path (e.g. "int8/avx512vnni").
    pub fn matmul_path(&self) -> String {
        let model = self.model.lock().unwrap_or_else(|p| p.into_inner());
        match (model.backend(), model.isa()) {
            (MatmulBackend::Int8, Some(isa)) => format!("int8/{isa}"),
            (MatmulBackend::Int8, None) => "int8 (no packed layer)".into(),
            (MatmulBackend::Candle, _) => "candle".into(),
        }
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.tokenizer.encode(text, false).map_err(|e| ModelError::Inference(format!("tokenizing: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Generate from an already rendered prompt.
    pub fn generate_raw(
        &self,
        prompt: &str,
        params: &GenerateParams,
        on_delta: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        let prompt_ids = self.encode(prompt)?;
        if prompt_ids.is_empty() {
            return Err(ModelError::InvalidInput("empty prompt".into()));
        }
        let ctx = self.facts.context_length;
        if prompt_ids.len() >= ctx {
            return Err(ModelError::InvalidInput(format!(
                "prompt is {} tokens; the model's context is {ctx}",
                prompt_ids.len()
            )));
        }
        let max_new = params.max_new_tokens.min(ctx - prompt_ids.len());
        let mut logits_processor = match params.decoding {
            Decoding::Greedy => LogitsProcessor::from_sampling(0, Sampling::ArgMax),
            Decoding::Sample { seed, temperature, top_p } => {
                LogitsProcessor::from_sampling(seed, Sampling::TopP { p: top_p, temperature })
            }
        };
        let cancelled = || params.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed));
        // One generation at a time per model: the KV cache lives in the weights.
        let mut model = self.model.lock().unwrap_or_else(|p| p.into_inner());
        let start = Instant::now();
        let input = Tensor::new(prompt_ids.as_slice(), &self.device)?.unsqueeze(0)?;
        let logits = model.forward(&input, 0)?.squeeze(0)?;
        let mut history: Vec<u32> = prompt_ids.clone();
        let mut next = self.pick(&mut logits_processor, &logits, &history, params)?;
        let prefill = start.elapsed();
        let decode_start = Instant::now();
        let mut stream = Utf8Stream::new(&self.tokenizer);
        let mut text = String::new();
        let mut generated = 0;
        let mut reason = StopReason::Length;
        while generated < max_new {
            if cancelled() {
                reason = StopReason::Cancelled;
                break;
            }
            if !params.ignore_stop && self.stop_ids.contains(&next) {
                reason = StopReason::Stop;
                break;
            }
            generated += 1;
            history.push(next);
            if let Some(delta) = stream.push(next)? {
                text.push_str(&delta);
                if !on_delta(&delta) {
                    reason = StopReason::Cancelled;
                    break;
                }
            }
            if generated == max_new {
                break;
            }
            let input = Tensor::new(&[next], &self.device)?.unsqueeze(0)?;
            let logits = model.forward(&input, history.len() - 1)?.squeeze(0)?;
            next = self.pick(&mut logits_processor, &logits, &history, params)?;
        }
        if reason != StopReason::Cancelled {
            if let Some(delta) = stream.finish()? {
                text.push_str(&delta);
                on_delta(&delta);
            }
        }
        let stats = GenerationStats {
            prompt_tokens: prompt_ids.len(),
            generated_tokens: generated,
            prefill_ms: prefill.as_secs_f64() * 1e3,
            decode_ms: decode_start.elapsed().as_secs_f64() * 1e3,
            time_to_first_token_ms: prefill.as_secs_f64() * 1e3,
            stop_reason: reason,
        };
        Ok(Generation { text, stats })
    }

    fn pick(&self, lp: &mut LogitsProcessor, logits: &Tensor, history: &[u32], params: &GenerateParams) -> Result<u32> {
        let logits = logits.to_dtype(candle_core::DType::F32)?;
        let logits = if params.repeat_penalty != 1.0 {
            let start = history.len().saturating_sub(params.repeat_last_n);
            candle_transformers::utils::apply_repeat_penalty(&logits, params.repeat_penalty, &history[start..])?
        } else {
            logits
        };
        Ok(lp.sample(&logits)?)
    }
}

impl Generator for QwenGenerator {
    fn model_id(&self) -> &str {
        &self.id
    }
    fn context_length(&self) -> usize {
        self.facts.context_length
    }
    fn count_tokens(&self, text: &str) -> Result<usize> {
        Ok(self.encode(text)?.len())
    }
    fn render(&self, messages: &[ChatMessage]) -> Result<String> {
        render_chat(&self.facts.template, messages)
    }
    fn generate(
        &self,
        messages: &[ChatMessage],
        params: &GenerateParams,
        on_delta: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        let prompt = self.render(messages)?;
        self.generate_raw(&prompt, params, on_delta)
    }
}
