//! `xiaoguan ask` and `xiaoguan ticket`: the answering layer from the command line.

use super::classify::classifiers_root;
use super::kb::{kbs_root, KbPaths};
use clap::Args;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use xiaoguan_assist::qa::rewrite::{Role, Turn};
use xiaoguan_assist::qa::{AnswerMode, AskRequest};
use xiaoguan_assist::setup::{self, Paths, Settings};
use xiaoguan_assist::ticket::TicketInput;
use xiaoguan_assist::AssistError;
use xiaoguan_models::registry::ModelRegistry;

#[derive(Args, Debug, Clone)]
pub struct SettingsArgs {
    /// Settings: which KBs, generator, rules and classifiers to use.
    #[arg(long, env = "XIAOGUAN_CONFIG", default_value = "assist.toml", global = true)]
    pub config: PathBuf,
    #[command(flatten)]
    pub paths: KbPaths,
}

impl SettingsArgs {
    pub fn load(&self, reg: &ModelRegistry) -> anyhow::Result<(Settings, Paths)> {
        let settings = Settings::load(&self.config)?;
        let store = self.paths.backend(&settings.store)?;
        let paths = Paths { kb_dir: self.paths.kb_dir.clone(), kbs_root: kbs_root(reg), classifiers_root: classifiers_root(reg), store };
        Ok((settings, paths))
    }
}

#[derive(Args, Debug)]
pub struct AskArgs {
    /// The question. Several questions = a conversation: earlier ones are the history.
    #[arg(required = true)]
    pub questions: Vec<String>,
    /// Answer from these knowledge bases only (repeatable; default: the settings' list).
    #[arg(long = "kb")]
    pub kbs: Vec<String>,
    #[arg(long, value_enum, default_value = "auto")]
    pub mode: ModeArg,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum ModeArg {
    Auto,
    Extractive,
    Generate,
}

impl From<ModeArg> for AnswerMode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Auto => AnswerMode::Auto,
            ModeArg::Extractive => AnswerMode::Extractive,
            ModeArg::Generate => AnswerMode::Generate,
        }
    }
}

#[derive(Args, Debug)]
pub struct TicketArgs {
    /// A file with the ticket text (or a JSON object {text, title, fields}); `-` or nothing = stdin.
    pub file: Option<PathBuf>,
    /// Draft the suggested reply with the generator (slow on CPU).
    #[arg(long)]
    pub generate: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

pub fn ask(reg: &ModelRegistry, args: &AskArgs) -> anyhow::Result<()> {
    let (settings, paths) = args.settings.load(reg)?;
    let mode: AnswerMode = args.mode.into();
    let generates = mode == AnswerMode::Generate || (mode == AnswerMode::Auto && settings.answer.auto_generates);
    let (assistant, missing) = setup::assistant(reg, &paths, &settings, Some(&args.kbs), generates)?;
    for m in missing {
        eprintln!("note: knowledge base '{m}' is not ingested and is left out (`xiaoguan kb ingest {m}`)");
    }
    let mut history: Vec<Turn> = Vec::new();
    for (i, q) in args.questions.iter().enumerate() {
        let req = AskRequest { question: q.clone(), history: history.clone(), kbs: None, mode, ..Default::default() };
        let last = i + 1 == args.questions.len();
        let streaming = !args.json && last;
        let mut out = std::io::stdout();
        let answer = assistant.ask(&req, &mut |t| {
            if streaming {
                let _ = write!(out, "{t}");
                let _ = out.flush();
            }
            true
        })?;
        history.push(Turn { role: Role::User, content: q.clone() });
        history.push(Turn { role: Role::Assistant, content: answer.text.clone() });
        if !last {
            continue;
        }
        if args.json {
            println!("{}", serde_json::to_string_pretty(&answer)?);
            continue;
        }
        println!();
        if let Some(r) = &answer.rewritten_question {
            println!("（按上下文理解为：{r}）");
        }
        for c in &answer.citations {
            let no = c.doc_no.as_deref().map(|n| format!(" {n}")).unwrap_or_default();
            println!("[{}] {}{} · {} · {}", c.index, c.heading_path, no, c.kb, c.chunk_id);
        }
        let routes: Vec<String> = answer.routes.iter().filter(|r| r.used).map(|r| format!("{} {:.3}", r.kb, r.similarity)).collect();
        println!(
            "— {:?}, handoff {}, confidence {:.2}, {:.0} ms, KBs used: {}",
            answer.answered_by,
            answer.handoff,
            answer.confidence,
            answer.timings.total_ms,
            if routes.is_empty() { "-".into() } else { routes.join(", ") }
        );
        for n in &answer.notes {
            println!("  note: {n}");
        }
    }
    Ok(())
}

fn read_ticket(file: &Option<PathBuf>) -> anyhow::Result<TicketInput> {
    let (name, text) = match file {
        Some(p) if p.as_os_str() != "-" => {
            let bytes = std::fs::read(p).map_err(|e| AssistError::InvalidInput(format!("{}: {e}", p.display())))?;
            let text = String::from_utf8(bytes).map_err(|_| AssistError::InvalidInput(format!("{}: not UTF-8 text", p.display())))?;
            (p.display().to_string(), text)
        }
        _ => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map_err(|e| AssistError::InvalidInput(format!("stdin: {e}")))?;
            ("stdin".to_string(), s)
        }
    };
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(&text).map_err(|e| AssistError::InvalidInput(format!("{name}:{}: {e}", e.line())).into());
    }
    Ok(TicketInput { text, ..Default::default() })
}

pub fn ticket(reg: &ModelRegistry, args: &TicketArgs) -> anyhow::Result<()> {
    let input = TicketInput { generate: args.generate, ..read_ticket(&args.file)? };
    let (settings, paths) = args.settings.load(reg)?;
    let assistant = match setup::assistant(reg, &paths, &settings, None, args.generate) {
        Ok((a, _)) => Some(Arc::new(a)),
        Err(e) if e.is_user_error() => {
            eprintln!("note: no suggested reply: {e}");
            None
        }
        Err(e) => return Err(e.into()),
    };
    let ta = setup::ticket_assist(reg, &paths, &settings, assistant)?;
    let r = ta.assist(&input)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    if r.signals.escalate {
        let flags: Vec<String> = r.signals.flags.iter().map(|f| format!("{}（{}）", f.label, f.triggers.join("、"))).collect();
        println!("⚠ 弱信号，立即升级处理：{}", flags.join("；"));
    }
    println!("摘要：{}", r.summary);
    let show = |name: &str, f: &Option<xiaoguan_assist::ticket::LabeledField>| match f {
        Some(f) => println!("{name}：{} （置信度 {:.2}{}）", f.label, f.confidence, if f.needs_review { "，建议人工复核" } else { "" }),
        None => println!("{name}：—（分类器未训练）"),
    };
    show("诉求类型", &r.request_type);
    show("领域", &r.domain);
    show("一级分类", &r.category_l1);
    println!("处置类别：{} （规则判断，置信度 {:.2}）", r.handling_category.label, r.handling_category.confidence);
    println!("派单建议{}：", if r.dispatch_needs_review { "（置信度低，建议人工复核）" } else { "" });
    for (i, d) in r.departments.iter().take(3).enumerate() {
        println!("  {}. {} {:.2}", i + 1, d.department, d.confidence);
        for why in &d.reasons {
            println!("     依据：{why}");
        }
    }
    if let Some(a) = &r.suggested_reply {
        println!("建议答复（{:?}{}）：\n{}", a.answered_by, if a.handoff { "，需人工" } else { "" }, a.text);
        for c in &a.citations {
            println!("  [{}] {} · {}", c.index, c.heading_path, c.chunk_id);
        }
    }
    for s in r.similar_tickets.iter().take(3) {
        println!("相似工单 {} [{}] {:.2}：{}", s.id, s.label, s.similarity, s.snippet);
    }
    println!("脱敏后原文：{}", r.masked_text);
    println!("— {:.0} ms (classify {:.0} ms, reply {:.0} ms){}", r.timings.total_ms, r.timings.classify_ms, r.timings.reply_ms, if r.needs_review { "; needs review" } else { "" });
    for reason in &r.review_reasons {
        println!("复核原因：{reason}");
    }
    Ok(())
}
