//! `xiaoguan classify train|predict`: the classifier heads of ticket assist.

use super::kb::KbPaths;
use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use xiaoguan_assist::classify::spec::{load_specs, ClassifierSpec};
use xiaoguan_assist::classify::{self, embedding_text, ClassifierModel, TrainConfig, TrainReport};
use xiaoguan_assist::dispatch::DispatchRules;
use xiaoguan_assist::embed_cache::EmbeddingCache;
use xiaoguan_assist::metrics::{classification_report, top_k_accuracy};
use xiaoguan_assist::AssistError;
use xiaoguan_models::registry::ModelRegistry;
use xiaoguan_models::{Embedder, TextKind};

#[derive(Subcommand, Debug)]
pub enum ClassifyCmd {
    /// Train classifier heads: the ones named in classifiers.toml (all by default), or one from --data.
    Train(TrainArgs),
    /// Classify a text, or score a labelled JSONL file (rows never seen in training).
    Predict(PredictArgs),
    /// The labelling loop, simulated: held-out rows go through the ticket store's review queue
    /// (unsure or agent-corrected), N are confirmed, the head is retrained with them, and the
    /// gain is measured on held-out rows none of the models saw.
    LoopSim(super::labelling::LoopSimArgs),
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Names from the spec file (default: all of them).
    pub names: Vec<String>,
    #[arg(long, env = "XIAOGUAN_CLASSIFIERS", default_value = "classifiers.toml")]
    pub spec: PathBuf,
    #[arg(long, env = "XIAOGUAN_RULES", default_value = "rules/dispatch.toml")]
    pub rules: PathBuf,
    /// Train one classifier from --data instead of the spec file.
    #[command(flatten)]
    pub file: DataFile,
    #[arg(long)]
    pub id_field: Option<String>,
    /// Where to write the model (default <home>/classifiers/<name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, default_value = "custom")]
    pub name: String,
    /// n-gram features only (no embedder, no kNN memory).
    #[arg(long)]
    pub no_embed: bool,
    /// Retrain the saved model on every row (by default the held-out 20 % stay unseen for evaluation).
    #[arg(long)]
    pub all_rows: bool,
    #[arg(long, default_value = "e5-small")]
    pub embedder: String,
    /// Training passes over the data.
    #[arg(long, default_value_t = 6)]
    pub epochs: usize,
    #[arg(long, default_value_t = 0.3)]
    pub learning_rate: f32,
    /// Class balancing: 0 = none, 1 = fully balanced class weights.
    #[arg(long, default_value_t = 0.5)]
    pub balance: f32,
    /// Weight of the embedding next to the n-gram features.
    #[arg(long, default_value_t = 1.0)]
    pub dense_scale: f32,
    #[arg(long, default_value_t = 10)]
    pub knn_k: usize,
    #[arg(long)]
    pub json: bool,
    /// The ticket store whose reviewed tickets are added as training rows (default: the service's).
    #[arg(long, env = "XIAOGUAN_DATABASE_URL")]
    pub database: Option<String>,
    /// Train on the dataset only, without the reviewed tickets.
    #[arg(long)]
    pub no_reviewed: bool,
    #[command(flatten)]
    pub paths: KbPaths,
}

/// A labelled JSONL/JSON file and its fields.
#[derive(Args, Debug)]
pub struct DataFile {
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long = "text-field", default_value = "text")]
    pub text_fields: Vec<String>,
    #[arg(long, default_value = "label")]
    pub label_field: String,
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A classifier name (under <home>/classifiers) or a folder.
    pub model: String,
    /// The text to classify (or use --data).
    pub text: Option<String>,
    #[command(flatten)]
    pub file: DataFile,
    #[arg(long, env = "XIAOGUAN_RULES", default_value = "rules/dispatch.toml")]
    pub rules: PathBuf,
    #[arg(long)]
    pub json: bool,
}

pub fn classifiers_root(reg: &ModelRegistry) -> PathBuf {
    reg.store().home().join("classifiers")
}

pub fn model_dir(reg: &ModelRegistry, name_or_dir: &str) -> PathBuf {
    let p = Path::new(name_or_dir);
    if p.join("classifier.json").exists() {
        p.to_path_buf()
    } else {
        classifiers_root(reg).join(name_or_dir)
    }
}

/// Embeddings of classification texts through the on-disk cache, with a progress bar.
pub fn embed_texts(reg: &ModelRegistry, embedder: &dyn Embedder, texts: &[String], quiet: bool) -> anyhow::Result<Vec<Vec<f32>>> {
    let mut cache = EmbeddingCache::open(&reg.store().home().join("cache").join("embeddings"), embedder)?;
    let prepared: Vec<String> = texts.iter().map(|t| embedding_text(t)).collect();
    let bar = xiaoguan_models::progress::bar(texts.len() as u64, "embedding [{bar:30}] {pos}/{len} {per_sec} {eta}", !quiet);
    let out = cache.embed(embedder, &prepared, TextKind::Query, &mut |n| bar.inc(n as u64))?;
    bar.finish_and_clear();
    Ok(out)
}

fn print_report(r: &TrainReport) {
    println!(
        "{}: {} rows ({} skipped), {} classes; held out {} rows\n  baseline (char 1-3-gram TF-IDF + LR): accuracy {:.3}  macro-F1 {:.3}  top-3 {:.3}\n  model (n-grams + e5 + kNN):           accuracy {:.3}  macro-F1 {:.3}  top-3 {:.3}  ECE {:.3}\n  kNN weight {:.2}, temperature {:.2}, abstain below {:.2}: abstains on {:.1}% with {:.3} accuracy on the rest ({:.1}s)",
        r.name, r.rows, r.skipped_rows, r.classes, r.holdout_rows,
        r.baseline.accuracy, r.baseline.macro_f1, r.baseline.top3_accuracy,
        r.model.accuracy, r.model.macro_f1, r.model.top3_accuracy, r.model.ece,
        r.knn_weight, r.temperature, r.abstain_threshold, r.abstain_rate * 100.0, r.accuracy_when_answered, r.seconds
    );
}

/// Reviewed tickets for a head that learns from a review field, from the store the service uses
/// (none when there is no store yet).
fn reviewed_rows(reg: &ModelRegistry, database: Option<&str>, spec: &ClassifierSpec, map: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Vec<classify::Example>> {
    let Some(field) = &spec.review_field else { return Ok(Vec::new()) };
    let c = xiaoguan_server::config::DatabaseConfig { url: database.map(String::from), ..Default::default() };
    let url = xiaoguan_server::database::url(&c, reg.store().home())?;
    if !url.starts_with("postgres") && !Path::new(url.strip_prefix("sqlite://").unwrap_or(&url)).exists() {
        return Ok(Vec::new());
    }
    let store = super::tickets::open_store(reg, Some(&url))?;
    Ok(classify::reviewed::reviewed_examples(&store.reviewed()?, field, map))
}

/// The head's label spelling: department names through the dispatch rules' aliases.
pub fn label_map<'a>(rules: Option<&'a DispatchRules>) -> impl Fn(&str) -> Option<String> + 'a {
    move |l: &str| Some(rules.map(|r| r.canonical(l)).unwrap_or_else(|| l.to_string()))
}

fn train_one(reg: &ModelRegistry, args: &TrainArgs, spec: &ClassifierSpec, data: &Path, rules: Option<&DispatchRules>) -> anyhow::Result<TrainReport> {
    let map = label_map(rules);
    let (mut examples, skipped, mut sha) = classify::load_examples(data, &spec.text, &spec.label, spec.id.as_deref(), &map)?;
    if !args.no_reviewed && args.file.data.is_none() {
        let extra = reviewed_rows(reg, args.database.as_deref(), spec, &map)?;
        if !extra.is_empty() {
            if !args.json {
                println!("{}: + {} reviewed ticket(s) from the ticket store", spec.name, extra.len());
            }
            // The model's provenance names the reviewed rows too.
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            h.update(sha.as_bytes());
            for e in &extra {
                h.update(e.id.as_bytes());
                h.update(e.label.as_bytes());
            }
            sha = hex::encode(h.finalize());
            examples.extend(extra);
        }
    }
    if !args.json {
        eprintln!("{}: {} rows; embedding, then training and calibrating", spec.name, examples.len());
    }
    let started = std::time::Instant::now();
    let (embeddings, embedder_id) = if args.no_embed {
        (None, None)
    } else {
        let embedder = reg.embedder(&args.embedder)?;
        let texts: Vec<String> = examples.iter().map(|e| e.text.clone()).collect();
        (Some(embed_texts(reg, embedder.as_ref(), &texts, args.json)?), Some(embedder.model_id().to_string()))
    };
    let cfg = TrainConfig {
        name: spec.name.clone(),
        final_on_all_rows: args.all_rows,
        knn_k: args.knn_k,
        params: xiaoguan_assist::classify::linear::TrainParams {
            epochs: args.epochs,
            learning_rate: args.learning_rate,
            balance: args.balance,
            dense_scale: args.dense_scale,
            ..Default::default()
        },
        ..Default::default()
    };
    if !args.json {
        eprintln!("{}: embedded in {:.1} s; training", spec.name, started.elapsed().as_secs_f64());
    }
    let (model, report) = classify::train(&examples, skipped, &sha, embeddings.as_deref(), embedder_id.as_deref(), &cfg)?;
    let out = args.out.clone().filter(|_| args.file.data.is_some()).unwrap_or_else(|| classifiers_root(reg).join(&spec.name));
    model.save(&out)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
        println!("  saved to {}", out.display());
    }
    Ok(report)
}

pub fn run(reg: &ModelRegistry, cmd: &ClassifyCmd) -> anyhow::Result<()> {
    match cmd {
        ClassifyCmd::Train(args) => {
            let rules = if args.rules.exists() { Some(DispatchRules::load(&args.rules)?) } else { None };
            if let Some(data) = &args.file.data {
                let spec = ClassifierSpec {
                    name: args.name.clone(),
                    description: String::new(),
                    data: data.clone(),
                    text: args.file.text_fields.clone(),
                    label: args.file.label_field.clone(),
                    id: args.id_field.clone(),
                    department_aliases: false,
                    review_field: None,
                };
                train_one(reg, args, &spec, data, None)?;
                return Ok(());
            }
            let specs = load_specs(&args.spec)?;
            for n in &args.names {
                if !specs.iter().any(|s| &s.name == n) {
                    return Err(AssistError::NotFound(format!("no classifier '{n}' in {}", args.spec.display())).into());
                }
            }
            let root = args.paths.data_root();
            for spec in specs.iter().filter(|s| args.names.is_empty() || args.names.contains(&s.name)) {
                let data = root.join(&spec.data);
                train_one(reg, args, spec, &data, rules.as_ref().filter(|_| spec.department_aliases))
                    .with_context(|| format!("training '{}'", spec.name))?;
            }
            Ok(())
        }
        ClassifyCmd::LoopSim(args) => super::labelling::loop_sim(reg, args),
        ClassifyCmd::Predict(args) => {
            let model = ClassifierModel::load(&model_dir(reg, &args.model))?;
            let embedder = match &model.meta.embedder {
                Some(id) => Some(reg.embedder(id)?),
                None => None,
            };
            match (&args.text, &args.file.data) {
                (Some(text), None) => {
                    if text.trim().is_empty() {
                        return Err(AssistError::InvalidInput("the text is empty".into()).into());
                    }
                    let emb = match &embedder {
                        Some(e) => Some(e.embed(&[&embedding_text(text)], TextKind::Query)?.remove(0)),
                        None => None,
                    };
                    let p = model.predict(text, emb.as_deref());
                    if args.json {
                        println!("{}", serde_json::to_string_pretty(&p)?);
                    } else {
                        match &p.label {
                            Some(l) => println!("{l}  (confidence {:.2})", p.confidence),
                            None => println!("(abstain: confidence {:.2} below {:.2}; needs human review)", p.confidence, model.meta.abstain_threshold),
                        }
                        for r in p.ranked.iter().take(3) {
                            println!("  {:<16} {:.3}", r.label, r.confidence);
                        }
                        for n in &p.neighbours {
                            println!("  similar {} [{}] {:.3} {}", n.id, n.label, n.similarity, n.snippet);
                        }
                    }
                    Ok(())
                }
                (None, Some(data)) => {
                    let rules = if args.rules.exists() { Some(DispatchRules::load(&args.rules)?) } else { None };
                    let map = |l: &str| -> Option<String> { Some(rules.as_ref().map(|r| r.canonical(l)).unwrap_or_else(|| l.to_string())) };
                    let (examples, skipped, _) = classify::load_examples(data, &args.file.text_fields, &args.file.label_field, None, &map)?;
                    let embs = match &embedder {
                        Some(e) => Some(embed_texts(reg, e.as_ref(), &examples.iter().map(|x| x.text.clone()).collect::<Vec<_>>(), args.json)?),
                        None => None,
                    };
                    let mut gold = Vec::new();
                    let mut pred = Vec::new();
                    let mut ranked = Vec::new();
                    let mut abstained = 0;
                    let mut answered_right = 0;
                    for (i, ex) in examples.iter().enumerate() {
                        let p = model.predict(&ex.text, embs.as_ref().map(|e| e[i].as_slice()));
                        gold.push(ex.label.clone());
                        let top = p.ranked[0].label.clone();
                        if p.abstained {
                            abstained += 1;
                        } else if top == ex.label {
                            answered_right += 1;
                        }
                        pred.push(Some(top));
                        ranked.push(p.ranked.iter().map(|r| r.label.clone()).collect::<Vec<_>>());
                    }
                    let report = classification_report(&gold, &pred);
                    let answered = examples.len() - abstained;
                    let summary = serde_json::json!({
                        "model": model.meta.name, "rows": examples.len(), "skipped_rows": skipped,
                        "accuracy": report.accuracy, "macro_f1": report.macro_f1,
                        "top3_accuracy": top_k_accuracy(&gold, &ranked, 3),
                        "abstain_rate": abstained as f64 / examples.len().max(1) as f64,
                        "accuracy_when_answered": answered_right as f64 / answered.max(1) as f64,
                        "per_class": report.per_class,
                    });
                    if args.json {
                        println!("{summary}");
                    } else {
                        println!(
                            "{}: {} rows: accuracy {:.3}, macro-F1 {:.3}, top-3 {:.3}, abstains on {:.1}%",
                            model.meta.name, examples.len(), report.accuracy, report.macro_f1, summary["top3_accuracy"].as_f64().unwrap_or(0.0),
                            summary["abstain_rate"].as_f64().unwrap_or(0.0) * 100.0
                        );
                    }
                    Ok(())
                }
                _ => Err(AssistError::InvalidInput("give either a text or --data FILE".into()).into()),
            }
        }
    }
}
