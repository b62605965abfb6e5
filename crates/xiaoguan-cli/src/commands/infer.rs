use anyhow::Context;
use clap::Args;
use std::io::Write;
use xiaoguan_models::registry::ModelRegistry;
use xiaoguan_models::{cosine, ChatMessage, Decoding, GenerateParams, Role, TextKind};

#[derive(Args, Debug)]
pub struct EmbedArgs {
    /// Texts to embed.
    #[arg(required = true)]
    pub texts: Vec<String>,
    #[arg(long, env = "XIAOGUAN_EMBEDDER", default_value = "e5-small")]
    pub model: String,
    /// Embed as search queries (default: passages).
    #[arg(long)]
    pub query: bool,
    /// Print the vectors as JSON instead of the cosine matrix.
    #[arg(long)]
    pub vectors: bool,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// The user's message.
    pub prompt: String,
    #[arg(long, env = "XIAOGUAN_GENERATOR", default_value = "qwen2.5-coder-0.5b")]
    pub model: String,
    /// System message (default: the model's own, from its manifest).
    #[arg(long)]
    pub system: Option<String>,
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    /// Sample with this seed instead of greedy decoding.
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f64,
    #[arg(long, default_value_t = 0.9)]
    pub top_p: f64,
    /// Print timing figures to stderr.
    #[arg(long)]
    pub stats: bool,
}

pub fn embed(reg: &ModelRegistry, args: &EmbedArgs) -> anyhow::Result<()> {
    if let Some((i, _)) = args.texts.iter().enumerate().find(|(_, t)| t.trim().is_empty()) {
        anyhow::bail!(xiaoguan_models::ModelError::InvalidInput(format!("text {} is empty", i + 1)));
    }
    let e = reg.embedder(&args.model)?;
    let kind = if args.query { TextKind::Query } else { TextKind::Passage };
    let texts: Vec<&str> = args.texts.iter().map(String::as_str).collect();
    let vecs = e.embed(&texts, kind)?;
    if args.vectors {
        println!("{}", serde_json::to_string(&vecs)?);
        return Ok(());
    }
    println!("{} texts, {} dimensions ({})", vecs.len(), e.dimension(), e.model_id());
    for (i, a) in vecs.iter().enumerate() {
        let row: Vec<String> = vecs.iter().map(|b| format!("{:.4}", cosine(a, b))).collect();
        println!("[{}] {}  {}", i + 1, row.join(" "), args.texts[i]);
    }
    Ok(())
}

pub fn generate(reg: &ModelRegistry, args: &GenerateArgs) -> anyhow::Result<()> {
    if args.prompt.trim().is_empty() {
        anyhow::bail!(xiaoguan_models::ModelError::InvalidInput("the prompt is empty".into()));
    }
    let g = reg.generator(&args.model)?;
    let mut messages = Vec::new();
    if let Some(s) = &args.system {
        messages.push(ChatMessage::new(Role::System, s.clone()));
    }
    messages.push(ChatMessage::new(Role::User, args.prompt.clone()));
    let decoding = match args.seed {
        None => Decoding::Greedy,
        Some(seed) => Decoding::Sample { seed, temperature: args.temperature, top_p: args.top_p },
    };
    let params = GenerateParams { max_new_tokens: args.max_new_tokens, decoding, ..Default::default() };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = g.generate(&messages, &params, &mut |delta| {
        // A closed pipe (e.g. `| head`) stops generation instead of failing.
        out.write_all(delta.as_bytes()).and_then(|_| out.flush()).is_ok()
    })?;
    writeln!(out).context("writing to stdout")?;
    if args.stats {
        let s = &result.stats;
        eprintln!(
            "{} prompt tokens, {} generated; prefill {:.1} tok/s, decode {:.1} tok/s, first token {:.0} ms, stop: {:?}",
            s.prompt_tokens,
            s.generated_tokens,
            s.prefill_tokens_per_sec(),
            s.decode_tokens_per_sec(),
            s.time_to_first_token_ms,
            s.stop_reason
        );
    }
    Ok(())
}
