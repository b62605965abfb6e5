//! `xiaoguan classify loop-sim`: does the labelling loop (智能数据标注) make the heads better?
//!
//! Rows the shipped head never trained on (its hashed 20 % hold-out) are split in two: a pool
//! that plays incoming tickets, and evaluation rows nobody touches. Pool tickets are assisted
//! by the baseline head and stored in a fresh ticket store; where its label is wrong a
//! simulated agent corrects it (decision `edited`), where it abstains it is flagged — both put the
//! ticket in the review queue. A reviewer confirms the first N of the queue with the gold label,
//! the head is retrained with the reviewed rows (the same `reviewed_examples` that `classify
//! train` reads), and accuracy / macro-F1 are measured on the evaluation rows. A control adds N
//! random pool rows instead, to tell the queue's choice from having more rows.

use super::classify::{embed_texts, label_map};
use super::kb::KbPaths;
use clap::Args;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use xiaoguan_assist::classify::spec::load_specs;
use xiaoguan_assist::classify::{self, is_holdout, reviewed::reviewed_examples, Example, TrainConfig};
use xiaoguan_assist::dispatch::DispatchRules;
use xiaoguan_assist::AssistError;
use xiaoguan_models::registry::ModelRegistry;
use xiaoguan_tickets::{Decision, NewTicket, Review, TicketStore, Verdict};

#[derive(Args, Debug)]
pub struct LoopSimArgs {
    /// The head (a name in classifiers.toml with a review_field).
    #[arg(default_value = "category-l1")]
    pub name: String,
    /// Reviewed tickets to add, cumulatively.
    #[arg(long, value_delimiter = ',', default_value = "25,50,100,200")]
    pub corrections: Vec<usize>,
    #[arg(long, env = "XIAOGUAN_CLASSIFIERS", default_value = "classifiers.toml")]
    pub spec: PathBuf,
    #[arg(long, env = "XIAOGUAN_RULES", default_value = "rules/dispatch.toml")]
    pub rules: PathBuf,
    /// Train the baseline on only this many of the training rows (a stable sample): a city
    /// starting with little labelled data. Default: all of them.
    #[arg(long)]
    pub base_rows: Option<usize>,
    /// n-gram features only (no embedder, no kNN memory).
    #[arg(long)]
    pub no_embed: bool,
    #[arg(long, default_value = "e5-small")]
    pub embedder: String,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub paths: KbPaths,
}

#[derive(Debug, serde::Serialize)]
struct Step {
    reviewed: usize,
    queue_accuracy: f64,
    queue_macro_f1: f64,
    random_accuracy: f64,
    random_macro_f1: f64,
}

pub fn loop_sim(reg: &ModelRegistry, args: &LoopSimArgs) -> anyhow::Result<()> {
    let specs = load_specs(&args.spec)?;
    let spec = specs.iter().find(|s| s.name == args.name).ok_or_else(|| AssistError::NotFound(format!("no classifier '{}' in {}", args.name, args.spec.display())))?;
    let field = spec.review_field.clone().ok_or_else(|| AssistError::InvalidInput(format!("classifier '{}' has no review_field in {}", spec.name, args.spec.display())))?;
    let rules = if spec.department_aliases && args.rules.exists() { Some(DispatchRules::load(&args.rules)?) } else { None };
    let map = label_map(rules.as_ref());
    let data = args.paths.data_root().join(&spec.data);
    let (examples, _, sha) = classify::load_examples(&data, &spec.text, &spec.label, spec.id.as_deref(), &map)?;
    let held: Vec<&Example> = examples.iter().filter(|e| is_holdout(&e.id, 20)).collect();
    let (pool, eval): (Vec<&Example>, Vec<&Example>) = held.iter().partition(|e| is_holdout(&format!("{}/pool", e.id), 50));
    let mut train_rows: Vec<&Example> = examples.iter().filter(|e| !is_holdout(&e.id, 20)).collect();
    if let Some(n) = args.base_rows {
        train_rows.sort_by_key(|e| classify::features::fnv1a(format!("{}/base", e.id).bytes()));
        train_rows.truncate(n.max(1));
    }
    if pool.is_empty() || eval.is_empty() {
        return Err(AssistError::InvalidInput(format!("{}: too few held-out rows to simulate", data.display())).into());
    }
    let embedder = if args.no_embed { None } else { Some(reg.embedder(&args.embedder)?) };
    let eval_ids: HashSet<String> = eval.iter().map(|e| e.id.clone()).collect();
    let cfg = TrainConfig { name: spec.name.clone(), held_out: Some(eval_ids), ..Default::default() };
    // Train on base + extra, measure on the evaluation rows.
    let run = |extra: &[Example]| -> anyhow::Result<(classify::ClassifierModel, classify::TrainReport)> {
        let rows: Vec<Example> = train_rows.iter().chain(eval.iter()).map(|e| (*e).clone()).chain(extra.iter().cloned()).collect();
        let embs = match &embedder {
            Some(e) => Some(embed_texts(reg, e.as_ref(), &rows.iter().map(|x| x.text.clone()).collect::<Vec<_>>(), true)?),
            None => None,
        };
        Ok(classify::train(&rows, 0, &sha, embs.as_deref(), embedder.as_ref().map(|e| e.model_id()), &cfg)?)
    };
    let (base, base_report) = run(&[])?;

    // The pool, assisted by the baseline head and stored; agents correct the wrong ones.
    let dir = tempfile::tempdir()?;
    let store = xiaoguan_tickets::sqlite::SqliteStore::open(&dir.path().join("loop.db"))?;
    let pool_embs = match &embedder {
        Some(e) => Some(embed_texts(reg, e.as_ref(), &pool.iter().map(|x| x.text.clone()).collect::<Vec<_>>(), true)?),
        None => None,
    };
    let mut gold: HashMap<i64, String> = HashMap::new();
    let (mut wrong, mut unsure) = (0, 0);
    for (i, ex) in pool.iter().enumerate() {
        let p = base.predict(&ex.text, pool_embs.as_ref().map(|e| e[i].as_slice()));
        let predicted = p.ranked.first().map(|r| r.label.clone());
        let mut t = NewTicket { key_id: "sim-agent".into(), received_at_ms: i as i64, text: ex.text.clone(), needs_review: p.abstained, ..Default::default() };
        set_field(&mut t, &field, predicted.clone());
        let id = store.insert(&t)?;
        unsure += p.abstained as usize;
        if predicted.as_deref() != Some(ex.label.as_str()) {
            wrong += 1;
            let mut d = Decision { key_id: "sim-agent".into(), at_ms: i as i64, verdict: Verdict::Edited, unit: None, request_type: None, domain: None, category: None, reply: None, final_unit: None, closed: true };
            match field.as_str() {
                "unit" => d.unit = Some(ex.label.clone()),
                "request_type" => d.request_type = Some(ex.label.clone()),
                "domain" => d.domain = Some(ex.label.clone()),
                _ => d.category = Some(ex.label.clone()),
            }
            store.decide(id, &d)?;
        }
        gold.insert(id, ex.label.clone());
    }
    let queue = store.review_queue(pool.len())?;
    let mut steps = Vec::new();
    let mut done = 0;
    let mut sizes: Vec<usize> = args.corrections.iter().copied().filter(|n| *n > 0).collect();
    sizes.sort();
    sizes.dedup();
    for &n in &sizes {
        let n = n.min(queue.len());
        // The reviewer works down the queue, oldest first.
        for t in &queue[done..n] {
            let mut r = Review { reviewer: "sim-reviewer".into(), at_ms: t.id, request_type: None, domain: None, category: None, unit: None, note: None };
            let label = Some(gold[&t.id].clone());
            match field.as_str() {
                "unit" => r.unit = label,
                "request_type" => r.request_type = label,
                "domain" => r.domain = label,
                _ => r.category = label,
            }
            store.review(t.id, &r)?;
        }
        done = n;
        // Raw labels: the head's spelling already (the gold rows went through `map` on load).
        let reviewed = reviewed_examples(&store.reviewed()?, &field, &|l: &str| Some(l.to_string()));
        let (_, q) = run(&reviewed)?;
        // Control: N pool rows picked at random (stable hash order), gold labels.
        let mut random: Vec<&Example> = pool.clone();
        random.sort_by_key(|e| classify::features::fnv1a(format!("{}/random", e.id).bytes()));
        let control: Vec<Example> = random.iter().take(n).map(|e| Example { id: format!("control-{}", e.id), text: e.text.clone(), label: e.label.clone() }).collect();
        let (_, c) = run(&control)?;
        steps.push(Step { reviewed: n, queue_accuracy: q.model.accuracy, queue_macro_f1: q.model.macro_f1, random_accuracy: c.model.accuracy, random_macro_f1: c.model.macro_f1 });
        if n == queue.len() {
            break;
        }
    }
    let out = serde_json::json!({
        "head": spec.name, "field": field, "train_rows": train_rows.len(), "pool_rows": pool.len(), "eval_rows": eval.len(),
        "pool_wrong": wrong, "pool_abstained": unsure, "queue": queue.len(),
        "baseline_accuracy": base_report.model.accuracy, "baseline_macro_f1": base_report.model.macro_f1,
        "embedder": embedder.as_ref().map(|e| e.model_id().to_string()), "steps": steps,
    });
    if args.json {
        println!("{out}");
    } else {
        println!(
            "{}: trained on {} rows; pool {} held-out rows ({} wrong, {} abstained → {} in the review queue); evaluated on {} other held-out rows",
            spec.name, train_rows.len(), pool.len(), wrong, unsure, queue.len(), eval.len()
        );
        println!("  baseline            accuracy {:.3}  macro-F1 {:.3}", base_report.model.accuracy, base_report.model.macro_f1);
        for s in &steps {
            println!(
                "  +{:>4} from queue    accuracy {:.3} ({:+.3})  macro-F1 {:.3} ({:+.3})   | +{} random: accuracy {:.3}  macro-F1 {:.3}",
                s.reviewed,
                s.queue_accuracy,
                s.queue_accuracy - base_report.model.accuracy,
                s.queue_macro_f1,
                s.queue_macro_f1 - base_report.model.macro_f1,
                s.reviewed,
                s.random_accuracy,
                s.random_macro_f1
            );
        }
    }
    Ok(())
}

fn set_field(t: &mut NewTicket, field: &str, v: Option<String>) {
    match field {
        "unit" => t.suggested_unit = v,
        "request_type" => t.request_type = v,
        "domain" => t.domain = v,
        _ => t.category = v,
    }
}
