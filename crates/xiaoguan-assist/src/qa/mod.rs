//! Question answering for 小莞 and for agents. In order: rewrite a follow-up with the conversation;
//! structured facts; retrieval over the routed knowledge bases; the canonical FAQ answer when a
//! vetted question matches; the evidence gate (人工兜底); grounded generation verified sentence by
//! sentence, or the extractive answer. Every answer says how it was made and what it rests on.

pub mod extract;
pub mod facts;
pub mod injection;
pub mod prompt;
pub mod rewrite;
pub mod verify;

use crate::error::{AssistError, Result};
use crate::jurisdiction::{HomeRegion, Scope};
use crate::lexical::{containment, content_bigrams, dice};
use facts::{FactIndex, FactMatch};
use rewrite::Turn;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;
use xiaoguan_kb::{KnowledgeBase, SearchHit, SearchOptions};
use xiaoguan_models::{Decoding, Embedder, GenerateParams, Generator, TextKind};
use xiaoguan_store::{Condition, Filter};

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
    pub fn ask(&self, req: &AskRequest, on_text: &mut dyn FnMut(&str) -> bool) -> Result<Answer> {
        let started = Instant::now();
        let question = req.question.trim();
        if question.is_empty() {
            return Err(AssistError::InvalidInput("the question is empty".into()));
        }
        if question.chars().count() > MAX_QUESTION_CHARS {
            return Err(AssistError::InvalidInput(format!("the question is longer than {MAX_QUESTION_CHARS} characters")));
        }
        let kbs = self.selected(&req.kbs)?;
        let mut timings = Timings::default();
        let t = Instant::now();
        let rewritten = rewrite::rewrite(question, &req.history);
        let q = rewritten.clone().unwrap_or_else(|| question.to_string());
        timings.rewrite_ms = ms(t);
        let kb_versions: BTreeMap<String, u64> = kbs.iter().map(|k| (k.def.id.clone(), k.version())).collect();
        let models = Models { embedder: self.embedder.model_id().to_string(), generator: None };
        let mut answer = Answer {
            text: String::new(),
            answered_by: AnsweredBy::Handoff,
            handoff: true,
            confidence: 0.0,
            citations: Vec::new(),
            related: Vec::new(),
            question: question.to_string(),
            rewritten_question: rewritten,
            routes: Vec::new(),
            kb_versions,
            models,
            timings: Timings::default(),
            verification: None,
            evidence: None,
            notes: Vec::new(),
        };

        // The question's embedding serves the facts layer (bundles by meaning) and retrieval.
        let t = Instant::now();
        let dense = match (&req.query_embedding, &answer.rewritten_question) {
            (Some(e), None) if e.len() == self.embedder.dimension() => e.clone(),
            _ => self.embedder.embed(&[q.as_str()], TextKind::Query)?.pop().unwrap_or_default(),
        };
        let embed_ms = ms(t);

        // 1. Structured facts: exact fields of a named record.
        if let Some(m) = self.facts.lookup(&q, Some(&dense), self.config.facts_min_score, self.config.bundle_min_similarity) {
            let allowed = match &m {
                FactMatch::Item { item, .. } => kbs.iter().any(|k| k.def.id == item.kb),
                FactMatch::Bundle { .. } => true,
            };
            if allowed {
                answer.text = facts::render(&m);
                answer.answered_by = AnsweredBy::Facts;
                answer.handoff = false;
                let (cite, score) = match &m {
                    FactMatch::Item { item, score, .. } => (
                        Citation {
                            index: 1,
                            kb: item.kb.clone(),
                            title: item.item.clone(),
                            doc_no: None,
                            heading_path: item.item.clone(),
                            article: None,
                            doc_id: item.doc_id.clone(),
                            chunk_id: item.chunk_id.clone(),
                            score: *score,
                            similarity: None,
                            text: format!("受理部门：{}；承诺时限：{:?} 个工作日；材料 {} 项", item.department, item.promised_working_days, item.materials.len()),
                            jurisdiction: None,
                            note: None,
                        },
                        *score,
                    ),
                    FactMatch::Bundle { bundle, score, .. } => {
                        // Cite the bundle's chunk in a served KB (`one-thing`), else the bundles data.
                        let indexed = self.facts.bundle_chunks.get(&bundle.name).filter(|c| kbs.iter().any(|k| k.def.id == c.kb));
                        let fallback_id = format!("bundle:{}", bundle.name);
                        let cite = Citation {
                            index: 1,
                            kb: indexed.map_or_else(|| "dispatch-rules".into(), |c| c.kb.clone()),
                            title: bundle.name.clone(),
                            doc_no: indexed.and_then(|c| c.doc_no.clone()).or_else(|| (!bundle.source.is_empty()).then(|| bundle.source.clone())),
                            heading_path: bundle.name.clone(),
                            article: None,
                            doc_id: indexed.map_or_else(|| fallback_id.clone(), |c| c.doc_id.clone()),
                            chunk_id: indexed.map_or(fallback_id, |c| c.chunk_id.clone()),
                            score: *score,
                            similarity: None,
                            text: format!("本地牵头部门：{}；事项：{}", bundle.lead, bundle.items.join("、")),
                            jurisdiction: None,
                            note: None,
                        };
                        (cite, *score)
                    }
                };
                answer.citations.push(cite);
                answer.confidence = score;
                on_text(&answer.text);
                answer.timings = Timings { total_ms: ms(started), ..timings };
                return Ok(answer);
            }
        }

        // 2. Retrieval over every selected KB with one query embedding; route by similarity.
        let t = Instant::now();
        let mut filter = Filter::none();
        if let Some(doc) = &req.exclude_doc {
            filter = filter.and(Condition::Ne { field: "doc_id".into(), value: doc.clone().into() });
        }
        // Another region's local texts are set aside, so ask for more to keep top_k that apply.
        // Citations always say where their rule holds; `any_region` only stops the setting aside.
        let scope_home = self.config.home.as_ref();
        let home = scope_home.filter(|_| !req.any_region);
        let limit = if home.is_some() { self.config.top_k * 3 } else { self.config.top_k };
        let opts = SearchOptions { limit, filter, ..Default::default() };
        // Description routing narrows the search to the KBs whose description is closest.
        let kbs: Vec<&Arc<KnowledgeBase>> = match self.config.routing {
            Routing::SearchAll => kbs,
            Routing::Description => {
                let descriptions = self.descriptions()?;
                let score = |k: &Arc<KnowledgeBase>| {
                    self.kbs.iter().position(|x| x.def.id == k.def.id).map(|i| xiaoguan_models::cosine(&dense, &descriptions[i])).unwrap_or(0.0)
                };
                let best = kbs.iter().map(|k| score(k)).fold(f32::MIN, f32::max);
                kbs.into_iter().filter(|k| score(k) >= best - self.config.route_margin).collect()
            }
        };
        let mut per_kb: Vec<(String, Vec<SearchHit>)> = Vec::new();
        let mut elsewhere: Vec<SearchHit> = Vec::new();
        for kb in &kbs {
            match kb.search_embedded(&q, &dense, &opts) {
                Ok(hits) => {
                    let (mut applies, away) = self.by_jurisdiction(&kb.def.id, hits, home);
                    applies.truncate(self.config.top_k);
                    elsewhere.extend(away);
                    per_kb.push((kb.def.id.clone(), applies));
                }
                Err(xiaoguan_kb::KbError::NotIngested(id)) => answer.notes.push(format!("knowledge base '{id}' is not ingested; skipped")),
                Err(e) => return Err(e.into()),
            }
        }
        if !elsewhere.is_empty() {
            elsewhere.sort_by(|a, b| b.similarity.unwrap_or(0.0).total_cmp(&a.similarity.unwrap_or(0.0)));
            answer.notes.push(format!("{} passages of other regions' local texts set aside (not the rule here)", elsewhere.len()));
        }
        timings.retrieve_ms = ms(t) + embed_ms;
        let best_of = |hits: &[SearchHit]| hits.iter().filter_map(|h| h.similarity).fold(0.0f32, f32::max);
        let top = per_kb.iter().map(|(_, h)| best_of(h)).fold(0.0f32, f32::max);
        answer.routes = per_kb
            .iter()
            .map(|(kb, h)| RouteScore { kb: kb.clone(), similarity: best_of(h), used: best_of(h) >= top - self.config.route_margin && !h.is_empty() })
            .collect();
        answer.routes.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
        let used: Vec<&String> = answer.routes.iter().filter(|r| r.used).map(|r| &r.kb).collect();
        let mut hits: Vec<SearchHit> = per_kb.into_iter().filter(|(kb, _)| used.contains(&kb)).flat_map(|(_, h)| h).collect();
        hits.sort_by(|a, b| b.similarity.unwrap_or(0.0).total_cmp(&a.similarity.unwrap_or(0.0)));
        hits.truncate(self.config.top_k);
        // Sentences addressed to the assistant are not content: nothing below sees them.
        let mut neutralized = 0;
        for h in hits.iter_mut().chain(elsewhere.iter_mut()) {
            if let (std::borrow::Cow::Owned(clean), n) = injection::neutralize(&h.text) {
                h.text = clean;
                neutralized += n;
            }
        }
        if neutralized > 0 {
            answer.notes.push(format!("{neutralized} sentences of the retrieved passages speak to the assistant (prompt injection) and were left out"));
        }

        // What the gate will judge, computed first so every answer reports it.
        let qb = content_bigrams(&q);
        let best_sim = hits.first().and_then(|h| h.similarity).unwrap_or(0.0);
        let top_text: String = hits.iter().take(3).map(|h| h.text.as_str()).collect::<Vec<_>>().join("\n");
        let coverage = containment(&qb, &crate::lexical::bigrams(&crate::lexical::letters(&top_text)));
        // 3. Canonical answer: a vetted FAQ entry asking the same thing.
        let canonical = hits
            .iter()
            .filter(|h| self.config.faq_kbs.contains(&h.kb))
            .filter_map(|h| {
                let faq_q = h.payload.get("question")?.as_str()?;
                // An entry whose answer speaks to the assistant is not a vetted answer.
                if injection::neutralize(h.payload.get("answer")?.as_str()?).1 > 0 {
                    return None;
                }
                Some((h, dice(&qb, &content_bigrams(faq_q)), h.similarity.unwrap_or(0.0)))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let (canonical_dice, canonical_similarity) = canonical.map(|c| (c.1, c.2)).unwrap_or((0.0, 0.0));
        answer.evidence = Some(Evidence { best_similarity: best_sim, coverage, canonical_dice, canonical_similarity });
        if let Some((h, d, s)) = canonical {
            if d >= self.config.canonical_min_dice && s >= self.config.canonical_min_similarity {
                let text = h.payload.get("answer").and_then(|v| v.as_str()).unwrap_or_default();
                answer.text = format!("{} [1]", text.trim());
                answer.answered_by = AnsweredBy::Canonical;
                answer.handoff = false;
                answer.confidence = d.min(1.0);
                answer.citations.push(citation(1, h, scope_home));
                if let Some(note) = attribution(&answer.citations) {
                    answer.text.push_str(&note);
                }
                on_text(&answer.text);
                answer.timings = Timings { total_ms: ms(started), ..timings };
                return Ok(answer);
            }
        }

        // 4. Evidence gate.
        answer.related = hits.iter().take(3).chain(elsewhere.iter().take(2)).enumerate().map(|(i, h)| citation(i + 1, h, scope_home)).collect();
        if hits.is_empty() || best_sim < self.config.evidence_min_similarity || coverage < self.config.evidence_min_coverage {
            answer.notes.push(format!(
                "evidence gate: best similarity {best_sim:.3} (needs {:.2}), question coverage {coverage:.2} (needs {:.2})",
                self.config.evidence_min_similarity, self.config.evidence_min_coverage
            ));
            return Ok(self.handoff(answer, on_text, timings, started));
        }
        let support = ((best_sim - self.config.evidence_min_similarity) / (1.0 - self.config.evidence_min_similarity)).clamp(0.0, 1.0);
        let confidence = (0.5 * support + 0.5 * coverage).clamp(0.0, 1.0);
        let sources: Vec<&str> = hits.iter().map(|h| h.text.as_str()).collect();

        // 5. Grounded generation, verified sentence by sentence.
        let want_generation = self.will_generate(req.mode) || req.mode == AnswerMode::Generate;
        if want_generation {
            match &self.generator {
                None => answer.notes.push("no generator is loaded: extractive answer instead".into()),
                Some(g) => {
                    answer.models.generator = Some(g.model_id().to_string());
                    let t = Instant::now();
                    let blocks: Vec<String> =
                        hits.iter().enumerate().map(|(i, h)| prompt::source_block(i + 1, &h.title, &h.heading_path, &h.text)).collect();
                    let max_new = req.max_new_tokens.unwrap_or(self.config.max_new_tokens).clamp(1, 1024);
                    // The prompt must leave room for the reply inside the model's context.
                    let budget = self.config.max_context_tokens.min(g.context_length().saturating_sub(max_new + 16));
                    let (messages, n_sources) = prompt::build(g.as_ref(), &q, &blocks, budget)?;
                    let srcs = &sources[..n_sources.min(sources.len())];
                    let mut pending = String::new();
                    let mut kept: Vec<String> = Vec::new();
                    let mut checks = Vec::new();
                    let mut verify_ms = 0.0;
                    let mut stopped = false;
                    let mut take_sentences = |pending: &mut String, flush: bool, kept: &mut Vec<String>, checks: &mut Vec<verify::SentenceCheck>, on_text: &mut dyn FnMut(&str) -> bool| -> bool {
                        let vt = Instant::now();
                        let mut go_on = true;
                        loop {
                            let cut = pending.char_indices().find(|(_, c)| "。！？!?\n；".contains(*c)).map(|(i, c)| i + c.len_utf8());
                            // A citation marker right after the stop belongs to that sentence.
                            let cut = cut.map(|i| {
                                let rest = &pending[i..];
                                if rest.starts_with('[') {
                                    rest.find(']').map(|j| i + j + 1).unwrap_or(i)
                                } else {
                                    i
                                }
                            });
                            let piece: String = match cut {
                                Some(i) if i < pending.len() || flush => pending.drain(..i).collect(),
                                _ if flush && !pending.trim().is_empty() => std::mem::take(pending),
                                _ => break,
                            };
                            let v = verify::verify(&piece, srcs, self.config.verify_min_support);
                            for c in v.sentences {
                                if c.supported {
                                    let s = format!("{} [{}]", c.sentence, c.cites[0]);
                                    go_on &= on_text(&s);
                                    kept.push(s);
                                }
                                checks.push(c);
                            }
                        }
                        verify_ms += ms(vt);
                        go_on
                    };
                    let params = GenerateParams {
                        max_new_tokens: max_new,
                        decoding: Decoding::Greedy,
                        cancel: req.cancel.clone(),
                        ..Default::default()
                    };
                    let generated = g.generate(&messages, &params, &mut |delta| {
                        pending.push_str(delta);
                        if !take_sentences(&mut pending, false, &mut kept, &mut checks, on_text) {
                            stopped = true;
                        }
                        !stopped
                    });
                    // A generator failure (the prompt does not fit, a broken model) is ours, not the
                    // caller's: answer extractively and say why.
                    let generated_text = match generated {
                        Ok(g) => g.text,
                        Err(e) => {
                            tracing::warn!(error = %e, "generation failed; extractive answer instead");
                            answer.notes.push(format!("the generator failed ({e})"));
                            String::new()
                        }
                    };
                    take_sentences(&mut pending, true, &mut kept, &mut checks, on_text);
                    timings.generate_ms = ms(t) - verify_ms;
                    timings.verify_ms = verify_ms;
                    let removed = checks.iter().filter(|c| !c.supported).count();
                    let says_no_answer = generated_text.contains("资料中没有相关内容");
                    let verification = verify::Verification { kept: kept.len(), removed, text: kept.join(""), sentences: checks };
                    answer.verification = Some(verification);
                    if says_no_answer && kept.is_empty() {
                        answer.notes.push("the generator found no answer in the sources".into());
                        return Ok(self.handoff(answer, on_text, timings, started));
                    }
                    if !kept.is_empty() && removed <= kept.len() {
                        answer.text = kept.join("");
                        answer.answered_by = AnsweredBy::Generated;
                        answer.handoff = false;
                        answer.confidence = confidence * kept.len() as f32 / (kept.len() + removed) as f32;
                        answer.citations = cited(&answer.text, &hits, scope_home);
                        if let Some(note) = attribution(&answer.citations) {
                            on_text(&note);
                            answer.text.push_str(&note);
                        }
                        answer.timings = Timings { total_ms: ms(started), ..timings };
                        return Ok(answer);
                    }
                    // What the model said stays in the log: an unverified sentence may be anything
                    // (an echoed prompt, a document's instruction), so it is not put in the answer.
                    let head: String = generated_text.chars().take(120).collect();
                    tracing::debug!(generated = %head, "generated answer failed verification");
                    answer.notes.push(format!(
                        "generated answer failed verification ({} of {} sentences unsupported): extractive answer instead",
                        removed,
                        removed + kept.len()
                    ));
                    if !kept.is_empty() {
                        // Sentences already streamed stay; the extractive text follows them.
                        on_text("\n");
                    }
                }
            }
        }

        // 6. Extractive answer.
        let t = Instant::now();
        let picked = extract::extract(&q, &sources, self.config.extract_chars);
        timings.verify_ms += ms(t);
        if picked.is_empty() {
            answer.notes.push("no sentence of the retrieved passages matches the question".into());
            return Ok(self.handoff(answer, on_text, timings, started));
        }
        answer.text = extract::render(&picked);
        answer.answered_by = AnsweredBy::Extractive;
        answer.handoff = false;
        answer.confidence = confidence;
        answer.citations = cited(&answer.text, &hits, scope_home);
        if let Some(note) = attribution(&answer.citations) {
            answer.text.push_str(&note);
        }
        on_text(&answer.text);
        answer.timings = Timings { total_ms: ms(started), ..timings };
        Ok(answer)
    }

    /// Split a KB's hits into those whose rule applies in the home region and those of other
    /// regions. A widened KB's hits all apply; so do the FAQ KBs' (vetted answers guide retrieval,
    /// and an answer resting on another city's FAQ says whose practice it describes).
    fn by_jurisdiction(&self, kb: &str, hits: Vec<SearchHit>, home: Option<&HomeRegion>) -> (Vec<SearchHit>, Vec<SearchHit>) {
        match home {
            Some(h) if !h.widen_kbs.iter().any(|k| k == kb) && !self.config.faq_kbs.iter().any(|k| k == kb) => {
                hits.into_iter().partition(|hit| h.scope(&hit.payload, &hit.title).applies())
            }
            _ => (hits, Vec::new()),
        }
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
        on_text(&answer.text);
        answer.timings = Timings { total_ms: ms(started), ..timings };
        answer
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
