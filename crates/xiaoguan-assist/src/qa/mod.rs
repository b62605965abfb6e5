//! Question answering for 小莞 and for agents, as named stages composed in `Assistant::ask`:
//! rewrite a follow-up with the conversation (`rewrite`); structured facts (`facts`); retrieval
//! over the routed knowledge bases (`retrieve`); the canonical FAQ answer when a vetted question
//! matches (`canonical`); the evidence gate, 人工兜底 (`gate`); grounded generation verified
//! sentence by sentence (`generate`, `verify`), or the extractive answer (`extract`). Every answer
//! says how it was made and what it rests on.

pub mod canonical;
pub mod extract;
pub mod facts;
pub mod gate;
pub mod generate;
pub mod injection;
pub mod prompt;
pub mod retrieve;
pub mod rewrite;
pub mod verify;

use crate::error::{AssistError, Result};
use crate::jurisdiction::{HomeRegion, Scope};
use crate::lexical::content_bigrams;
use facts::FactIndex;
use rewrite::Turn;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;
use xiaoguan_kb::{KnowledgeBase, SearchHit, SearchOptions};
use xiaoguan_models::{Embedder, Generator, TextKind};

/// Longest question accepted (characters).
pub const MAX_QUESTION_CHARS: usize = 2000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnswerMode {
    /// Canonical / facts first; then generation if `auto_generates` is set and a generator is
    /// loaded, else extractive.
    #[default]
    Auto,
    Extractive,
    Generate,
}

/// How an answer was produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnsweredBy {
    Canonical,
    Facts,
    Generated,
    Extractive,
    Handoff,
}

/// How a question is routed to knowledge bases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Routing {
    /// Search every KB and keep those whose best passage is near the best overall.
    #[default]
    SearchAll,
    /// Compare the question with each KB's description; search only the closest KBs.
    Description,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AssistConfig {
    pub routing: Routing,
    /// Whether `auto` generates when a generator is loaded. Off by default: the shipped 0.5B
    /// generator writes sentences that pass verification yet are wrong (asked how long
    /// unemployment benefit lasts at most, it answered "12个月" from a passage that gives 12 and 24
    /// months), and a wrong confident answer is worse than a cited extract. `generate` still works.
    pub auto_generates: bool,
    /// Knowledge bases whose records are vetted Q&A pairs (payload `question` + `answer`).
    pub faq_kbs: Vec<String>,
    pub top_k: usize,
    /// Canonical answer: content-bigram Dice between the question and the FAQ question…
    pub canonical_min_dice: f32,
    /// …and dense similarity of the FAQ entry to the question.
    pub canonical_min_similarity: f32,
    /// Evidence gate: the best passage's dense similarity…
    pub evidence_min_similarity: f32,
    /// …and the share of the question's content bigrams found in the top passages.
    pub evidence_min_coverage: f32,
    pub facts_min_score: f32,
    /// Bigram containment a generated sentence needs in its source.
    pub verify_min_support: f32,
    pub max_context_tokens: usize,
    pub max_new_tokens: usize,
    pub extract_chars: usize,
    /// KBs within this similarity of the best one are used together.
    pub route_margin: f32,
    /// A bundle is found by meaning when the question's similarity to it reaches this.
    pub bundle_min_similarity: f32,
    /// The region answers are for: another region's local text is never the rule that applies,
    /// only a reference (None: every document applies).
    pub home: Option<HomeRegion>,
}

impl Default for AssistConfig {
    fn default() -> Self {
        // Thresholds calibrated on the dev data: `xiaoguan ask --calibrate` (see README).
        Self {
            routing: Routing::SearchAll,
            auto_generates: false,
            faq_kbs: vec!["gov-faq".into()],
            top_k: 6,
            canonical_min_dice: 0.9,
            canonical_min_similarity: 0.88,
            evidence_min_similarity: 0.88,
            evidence_min_coverage: 0.10,
            facts_min_score: 0.6,
            verify_min_support: 0.6,
            max_context_tokens: 900,
            max_new_tokens: 200,
            extract_chars: 260,
            route_margin: 0.03,
            bundle_min_similarity: 0.88,
            home: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AskRequest {
    pub question: String,
    #[serde(default)]
    pub history: Vec<Turn>,
    /// Restrict to these KBs (default: all the assistant serves).
    #[serde(default)]
    pub kbs: Option<Vec<String>>,
    #[serde(default)]
    pub mode: AnswerMode,
    /// Cap on generated tokens (default: the config's).
    #[serde(default)]
    pub max_new_tokens: Option<usize>,
    /// Take every region's local texts as applicable (the home region's rule first otherwise).
    #[serde(default)]
    pub any_region: bool,
    /// Leave this document out of retrieval (evaluation of rows that are in a KB).
    #[serde(skip)]
    pub exclude_doc: Option<String>,
    #[serde(skip)]
    pub cancel: Option<Arc<AtomicBool>>,
    /// The question already embedded by the assistant's embedder (saves a forward pass).
    #[serde(skip)]
    pub query_embedding: Option<Vec<f32>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Citation {
    /// The number used in the answer text ([1], [2]…).
    pub index: usize,
    pub kb: String,
    pub title: String,
    pub doc_no: Option<String>,
    pub heading_path: String,
    pub article: Option<String>,
    pub doc_id: String,
    pub chunk_id: String,
    pub score: f32,
    pub similarity: Option<f32>,
    pub text: String,
    /// Where the cited text's rule holds (national, the home region, or another region).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jurisdiction: Option<Scope>,
    /// "外地规定（浙江省），仅供参考" on a reference that is not the home region's rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteScore {
    pub kb: String,
    pub similarity: f32,
    pub used: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    pub rewrite_ms: f64,
    pub retrieve_ms: f64,
    pub generate_ms: f64,
    pub verify_ms: f64,
    pub total_ms: f64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Evidence {
    pub best_similarity: f32,
    pub coverage: f32,
    /// Best canonical candidate: (bigram Dice, similarity).
    pub canonical_dice: f32,
    pub canonical_similarity: f32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Models {
    pub embedder: String,
    pub generator: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub text: String,
    pub answered_by: AnsweredBy,
    pub handoff: bool,
    pub confidence: f32,
    pub citations: Vec<Citation>,
    /// On handoff: the closest sources, for the person taking over.
    pub related: Vec<Citation>,
    pub question: String,
    pub rewritten_question: Option<String>,
    pub routes: Vec<RouteScore>,
    pub kb_versions: BTreeMap<String, u64>,
    pub models: Models,
    pub timings: Timings,
    pub verification: Option<verify::Verification>,
    /// What the evidence gate saw: (best passage similarity, share of the question covered).
    pub evidence: Option<Evidence>,
    /// Why the answer took the path it did (fallbacks, gate decisions).
    pub notes: Vec<String>,
}

pub const HANDOFF_TEXT: &str = "抱歉，知识库中没有找到能够可靠回答这个问题的依据。为避免误导，已为您转接人工服务，工作人员会尽快答复。";

pub struct Assistant {
    kbs: Vec<Arc<KnowledgeBase>>,
    /// Each KB's title + description, embedded on first use (description routing only).
    descriptions: std::sync::OnceLock<Vec<Vec<f32>>>,
    embedder: Arc<dyn Embedder>,
    generator: Option<Arc<dyn Generator>>,
    facts: FactIndex,
    pub config: AssistConfig,
}

fn citation(index: usize, h: &SearchHit, home: Option<&HomeRegion>) -> Citation {
    let jurisdiction = home.map(|r| r.scope(&h.payload, &h.title));
    Citation {
        note: jurisdiction.as_ref().and_then(Scope::reference_note),
        jurisdiction,
        index,
        kb: h.kb.clone(),
        title: h.title.clone(),
        doc_no: h.doc_no.clone(),
        heading_path: h.heading_path.clone(),
        article: h.article.clone(),
        doc_id: h.doc_id.clone(),
        chunk_id: h.chunk_id.clone(),
        score: h.score,
        similarity: h.similarity,
        text: h.text.clone(),
    }
}

/// Says whose practice an answer resting on another region's Q&A describes.
fn attribution(citations: &[Citation]) -> Option<String> {
    let regions: Vec<&str> = citations
        .iter()
        .filter_map(|c| match &c.jurisdiction {
            Some(Scope::Foreign(r)) => Some(r.as_str()),
            _ => None,
        })
        .collect();
    let first = regions.first()?;
    Some(format!("（说明：以上答复口径来自{first}，反映的是当地做法，仅供参考；在本地办理请以本地规定和主管部门答复为准。）"))
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// The question without surrounding space, refused when empty or too long.
fn checked_question(question: &str) -> Result<&str> {
    let question = question.trim();
    if question.is_empty() {
        return Err(AssistError::InvalidInput("the question is empty".into()));
    }
    if question.chars().count() > MAX_QUESTION_CHARS {
        return Err(AssistError::InvalidInput(format!("the question is longer than {MAX_QUESTION_CHARS} characters")));
    }
    Ok(question)
}

/// `text` followed by whose practice it describes, when it rests on another region's Q&A.
fn with_attribution(mut text: String, citations: &[Citation]) -> String {
    if let Some(note) = attribution(citations) {
        text.push_str(&note);
    }
    text
}

/// Pass a finished answer's whole text on, and stamp the total time.
fn finish(mut answer: Answer, on_text: &mut dyn FnMut(&str) -> bool, timings: Timings, started: Instant) -> Answer {
    on_text(&answer.text);
    answer.timings = Timings { total_ms: ms(started), ..timings };
    answer
}

impl Answer {
    /// A handoff until a stage answers: the question, the KB versions and the models it ran on.
    fn pending(question: &str, rewritten: Option<String>, kbs: &[&Arc<KnowledgeBase>], embedder: &str) -> Self {
        Answer {
            text: String::new(),
            answered_by: AnsweredBy::Handoff,
            handoff: true,
            confidence: 0.0,
            citations: Vec::new(),
            related: Vec::new(),
            question: question.to_string(),
            rewritten_question: rewritten,
            routes: Vec::new(),
            kb_versions: kbs.iter().map(|k| (k.def.id.clone(), k.version())).collect(),
            models: Models { embedder: embedder.to_string(), generator: None },
            timings: Timings::default(),
            verification: None,
            evidence: None,
            notes: Vec::new(),
        }
    }

    /// A stage answered.
    fn settle(&mut self, by: AnsweredBy, text: String, citations: Vec<Citation>, confidence: f32) {
        self.text = text;
        self.answered_by = by;
        self.handoff = false;
        self.citations = citations;
        self.confidence = confidence;
    }
}

impl Assistant {
    /// The KBs must share one embedder (the query is embedded once).
    pub fn new(kbs: Vec<Arc<KnowledgeBase>>, generator: Option<Arc<dyn Generator>>, facts: FactIndex, config: AssistConfig) -> Result<Self> {
        let first = kbs.first().ok_or_else(|| AssistError::InvalidInput("the assistant needs at least one knowledge base".into()))?;
        let embedder = first.embedder().clone();
        if let Some(other) = kbs.iter().find(|k| k.embedder().model_id() != embedder.model_id()) {
            return Err(AssistError::InvalidInput(format!(
                "knowledge bases '{}' and '{}' use different embedders; serve them from separate assistants",
                first.def.id, other.def.id
            )));
        }
        Ok(Self { kbs, descriptions: std::sync::OnceLock::new(), embedder, generator, facts, config })
    }

    fn descriptions(&self) -> Result<&[Vec<f32>]> {
        if let Some(d) = self.descriptions.get() {
            return Ok(d);
        }
        let texts: Vec<String> = self.kbs.iter().map(|k| format!("{}：{}", k.def.title, k.def.description)).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let embedded = self.embedder.embed(&refs, TextKind::Passage)?;
        Ok(self.descriptions.get_or_init(|| embedded))
    }

    /// KBs ranked for a question by `strategy`, best first, with the score that ranked them
    /// (best passage similarity, or description similarity).
    pub fn route(&self, question: &str, strategy: Routing) -> Result<Vec<(String, f32)>> {
        let dense = self.embedder.embed(&[question], TextKind::Query)?.pop().unwrap_or_default();
        let mut scored: Vec<(String, f32)> = match strategy {
            Routing::Description => self.kbs.iter().zip(self.descriptions()?).map(|(k, d)| (k.def.id.clone(), xiaoguan_models::cosine(&dense, d))).collect(),
            Routing::SearchAll => {
                let opts = SearchOptions { limit: self.config.top_k, ..Default::default() };
                let mut out = Vec::new();
                for kb in &self.kbs {
                    let hits = kb.search_embedded(question, &dense, &opts)?;
                    out.push((kb.def.id.clone(), hits.iter().filter_map(|h| h.similarity).fold(0.0f32, f32::max)));
                }
                out
            }
        };
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(scored)
    }

    pub fn kbs(&self) -> &[Arc<KnowledgeBase>] {
        &self.kbs
    }

    /// Whether a request in this mode may run the generator (and so needs its queue slot).
    pub fn will_generate(&self, mode: AnswerMode) -> bool {
        self.generator.is_some() && (mode == AnswerMode::Generate || (mode == AnswerMode::Auto && self.config.auto_generates))
    }

    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.embedder
    }

    pub fn generator(&self) -> Option<&Arc<dyn Generator>> {
        self.generator.as_ref()
    }

    pub fn facts(&self) -> &FactIndex {
        &self.facts
    }

    fn selected(&self, only: &Option<Vec<String>>) -> Result<Vec<&Arc<KnowledgeBase>>> {
        match only {
            None => Ok(self.kbs.iter().collect()),
            // An empty selection is a scope with nothing in it, never "everything".
            Some(ids) if ids.is_empty() => Err(AssistError::InvalidInput("no knowledge base is selected".into())),
            Some(ids) => ids
                .iter()
                .map(|id| self.kbs.iter().find(|k| &k.def.id == id).ok_or_else(|| AssistError::NotFound(format!("unknown knowledge base '{id}'"))))
                .collect(),
        }
    }

    /// Answer a question; `on_text` receives the answer text as it becomes final (verified
    /// sentences of a generated answer, or the whole text at once) and returns false to stop.
    /// The stages, in order: rewrite → facts → retrieve → canonical → gate → generate → extract.
    pub fn ask(&self, req: &AskRequest, on_text: &mut dyn FnMut(&str) -> bool) -> Result<Answer> {
        let started = Instant::now();
        let question = checked_question(&req.question)?;
        let kbs = self.selected(&req.kbs)?;
        let mut timings = Timings::default();
        let t = Instant::now();
        let rewritten = rewrite::rewrite(question, &req.history);
        let q = rewritten.clone().unwrap_or_else(|| question.to_string());
        timings.rewrite_ms = ms(t);
        let mut answer = Answer::pending(question, rewritten, &kbs, self.embedder.model_id());
        // The question's embedding serves the facts layer (bundles by meaning) and retrieval.
        let t = Instant::now();
        let dense = match (&req.query_embedding, &answer.rewritten_question) {
            (Some(e), None) if e.len() == self.embedder.dimension() => e.clone(),
            _ => self.embedder.embed(&[q.as_str()], TextKind::Query)?.pop().unwrap_or_default(),
        };
        let embed_ms = ms(t);

        // 1. Structured facts: exact fields of a named record.
        let served: Vec<&str> = kbs.iter().map(|k| k.def.id.as_str()).collect();
        let fact = self.facts.lookup(&q, Some(&dense), self.config.facts_min_score, self.config.bundle_min_similarity);
        if let Some((text, cite, score)) = fact.and_then(|m| facts::answer(&m, &self.facts, &served)) {
            answer.settle(AnsweredBy::Facts, text, vec![cite], score);
            return Ok(finish(answer, on_text, timings, started));
        }

        // 2. Retrieval and routing.
        let t = Instant::now();
        let found = self.retrieve(kbs, &q, &dense, req)?;
        timings.retrieve_ms = ms(t) + embed_ms;
        let (hits, elsewhere) = (found.hits, found.elsewhere);
        answer.routes = found.routes;
        answer.notes.extend(found.notes);
        let home = self.config.home.as_ref();

        // What the canonical stage and the gate judge, measured first so every answer reports it.
        let qb = content_bigrams(&q);
        let measured = gate::measure(&qb, &hits);
        let candidate = canonical::best(&qb, &hits, &self.config.faq_kbs);
        answer.evidence = Some(Evidence {
            best_similarity: measured.best_similarity,
            coverage: measured.coverage,
            canonical_dice: candidate.map_or(0.0, |c| c.dice),
            canonical_similarity: candidate.map_or(0.0, |c| c.similarity),
        });

        // 3. Canonical answer: a vetted FAQ entry asking the same thing.
        if let Some(c) = candidate.filter(|c| c.accepted(self.config.canonical_min_dice, self.config.canonical_min_similarity)) {
            let citations = vec![citation(1, c.hit, home)];
            let text = with_attribution(c.text(), &citations);
            answer.settle(AnsweredBy::Canonical, text, citations, c.dice.min(1.0));
            return Ok(finish(answer, on_text, timings, started));
        }

        // 4. Evidence gate.
        answer.related = hits.iter().take(3).chain(elsewhere.iter().take(2)).enumerate().map(|(i, h)| citation(i + 1, h, home)).collect();
        let gate = gate::Gate { min_similarity: self.config.evidence_min_similarity, min_coverage: self.config.evidence_min_coverage };
        let confidence = match gate.judge(measured, !hits.is_empty()) {
            Ok(c) => c,
            Err(why) => {
                answer.notes.push(why);
                return Ok(self.handoff(answer, on_text, timings, started));
            }
        };

        // 5. Grounded generation, verified sentence by sentence.
        if self.will_generate(req.mode) || req.mode == AnswerMode::Generate {
            match &self.generator {
                None => answer.notes.push("no generator is loaded: extractive answer instead".into()),
                Some(g) => {
                    answer.models.generator = Some(g.model_id().to_string());
                    let generation = self.generate(g, &q, &hits, req, on_text)?;
                    timings.generate_ms = generation.generate_ms;
                    timings.verify_ms = generation.verify_ms;
                    answer.notes.extend(generation.notes);
                    answer.verification = Some(generation.verification);
                    match generation.outcome {
                        generate::Outcome::NoAnswer => return Ok(self.handoff(answer, on_text, timings, started)),
                        generate::Outcome::Answered { text, kept, removed } => {
                            let citations = cited(&text, &hits, home);
                            answer.settle(AnsweredBy::Generated, text, citations, confidence * kept as f32 / (kept + removed) as f32);
                            // The sentences are already streamed; only the attribution is left.
                            if let Some(note) = attribution(&answer.citations) {
                                on_text(&note);
                                answer.text.push_str(&note);
                            }
                            answer.timings = Timings { total_ms: ms(started), ..timings };
                            return Ok(answer);
                        }
                        generate::Outcome::Unverified => {}
                    }
                }
            }
        }

        // 6. Extractive answer.
        let t = Instant::now();
        let sources: Vec<&str> = hits.iter().map(|h| h.text.as_str()).collect();
        let picked = extract::extract(&q, &sources, self.config.extract_chars);
        timings.verify_ms += ms(t);
        if picked.is_empty() {
            answer.notes.push("no sentence of the retrieved passages matches the question".into());
            return Ok(self.handoff(answer, on_text, timings, started));
        }
        let text = extract::render(&picked);
        let citations = cited(&text, &hits, home);
        let text = with_attribution(text, &citations);
        answer.settle(AnsweredBy::Extractive, text, citations, confidence);
        Ok(finish(answer, on_text, timings, started))
    }

    fn handoff(&self, mut answer: Answer, on_text: &mut dyn FnMut(&str) -> bool, timings: Timings, started: Instant) -> Answer {
        let mut text = HANDOFF_TEXT.to_string();
        if !answer.related.is_empty() {
            text.push_str("\n可能相关的资料：");
            for c in &answer.related {
                let note = c.note.as_deref().map(|n| format!("（{n}）")).unwrap_or_default();
                text.push_str(&format!("\n[{}] {}{note}", c.index, if c.heading_path.is_empty() { &c.title } else { &c.heading_path }));
            }
        }
        answer.text = text;
        answer.answered_by = AnsweredBy::Handoff;
        answer.handoff = true;
        answer.citations.clear();
        answer.confidence = 0.0;
        finish(answer, on_text, timings, started)
    }
}

/// Citations for the [n] markers that occur in `text`, renumbered in order of first use.
fn cited(text: &str, hits: &[SearchHit], home: Option<&HomeRegion>) -> Vec<Citation> {
    let mut out: Vec<Citation> = Vec::new();
    for (i, h) in hits.iter().enumerate() {
        if text.contains(&format!("[{}]", i + 1)) {
            out.push(citation(i + 1, h, home));
        }
    }
    out
}
