//! Ticket history: every assisted ticket goes into the ticket store (masked), and before it does,
//! the store is asked whether the same reporter or the same matter came in before — "此前已有 3 件
//! 同类诉求" on the agent's screen, so a complaint is not dispatched again as if it were new
//! (避免反复承办).

use crate::error::{AssistError, Result};
use crate::ticket::{TicketAssist, TicketInput, TicketResult};
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::Arc;
use xiaoguan_models::TextKind;
use xiaoguan_tickets::{reporter_key, NewTicket, TicketId, TicketRecord, TicketStore};

/// How far back repeats are looked for, and how many candidates are read per ticket; what
/// counts as the same matter is `xiaoguan_analytics::repeats` (the rule the supervisors'
/// repeat report uses too).
#[derive(Debug, Clone)]
pub struct RepeatConfig {
    pub window_days: i64,
    pub max_candidates: usize,
    pub analytics: xiaoguan_analytics::Config,
}

impl Default for RepeatConfig {
    fn default() -> Self {
        Self { window_days: 90, max_candidates: 200, analytics: xiaoguan_analytics::Config::default() }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EarlierTicket {
    pub id: TicketId,
    pub received_at_ms: i64,
    /// duplicate | same_reporter | same_matter
    pub reason: xiaoguan_analytics::RepeatKind,
    /// 重复件 / 同一诉求人再次反映 / 同一地点同类诉求
    pub reason_label: &'static str,
    pub similarity: f32,
    /// The earlier one was closed (办结) before this one came in: the matter came back.
    pub closed: bool,
    pub days_between: f64,
    pub unit: Option<String>,
    pub snippet: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Repeats {
    pub count: usize,
    /// "此前已有 N 件同类诉求（其中 K 件已办结）", for the agent; None when there are none.
    pub message: Option<String>,
    /// Newest first.
    pub earlier: Vec<EarlierTicket>,
}

/// Who asked, and the facts about the ticket that are not in its text.
#[derive(Debug, Clone, Default)]
pub struct RecordMeta {
    pub key_id: String,
    /// The reporter's phone or account (hashed before storing; never kept).
    pub reporter: Option<String>,
    /// When the ticket came in (unix ms; default now).
    pub received_at_ms: Option<i64>,
}

pub struct TicketHistory {
    pub store: Arc<dyn TicketStore>,
    salt: String,
    pub repeats: RepeatConfig,
}

/// Where a ticket is: `(place, town)` — the place label ("南城街道·鸿福路", "A3区·米兰春天")
/// and the town or district repeats are looked up by (the Dongguan town the units directory
/// finds, else the district or town the text names).
pub fn place_of(title: Option<&str>, result: &TicketResult) -> (Option<String>, Option<String>) {
    let town = result.direct_dispatch.as_ref().and_then(|d| d.towns.first()).map(|t| t.town.clone());
    let p = xiaoguan_analytics::place::extract(title.unwrap_or(""), &result.masked_text);
    let area = town.or_else(|| p.coarse_key().map(String::from));
    (p.label(), area)
}

/// A stored ticket as the analytics see it.
pub fn analytics_ticket(t: &TicketRecord) -> xiaoguan_analytics::Ticket {
    xiaoguan_analytics::Ticket {
        id: t.id.to_string(),
        time_ms: t.ticket.received_at_ms,
        title: t.ticket.title.clone().unwrap_or_default(),
        text: t.ticket.text.clone(),
        reporter: t.ticket.reporter.clone(),
        place: t.ticket.place.clone(),
        town: t.ticket.town.clone(),
        domain: t.ticket.domain.clone(),
        category: t.ticket.category.clone(),
        unit: t.effective_unit().map(String::from),
        suggested_unit: t.ticket.suggested_unit.clone(),
        unit_changed: t.unit_changed(),
        closed: t.closed(),
        closed_at_ms: t.decision.as_ref().filter(|d| d.closed).map(|d| d.at_ms),
        likes: None,
        dislikes: None,
        embedding: t.ticket.embedding.clone(),
    }
}

impl TicketHistory {
    pub fn new(store: Arc<dyn TicketStore>, salt: impl Into<String>) -> Self {
        Self { store, salt: salt.into(), repeats: RepeatConfig::default() }
    }

    /// Earlier tickets that are the same matter as `new` (same reporter, or same place and
    /// close in meaning, or a duplicate), best first. Candidates: the store's tickets of the
    /// same reporter or town within the window (the latest ones when neither is known).
    pub fn earlier(&self, new: &xiaoguan_analytics::Ticket) -> Result<Vec<EarlierTicket>> {
        let c = &self.repeats;
        let since = new.time_ms.saturating_sub(c.window_days.saturating_mul(86_400_000));
        // Neither a reporter nor a place: the latest tickets, where a duplicate would be.
        let candidates = if new.reporter.is_none() && new.town.is_none() {
            let q = xiaoguan_tickets::TicketQuery { since_ms: Some(since), limit: c.max_candidates, ..Default::default() };
            self.store.list(&q)
        } else {
            self.store.prior_candidates(new.reporter.as_deref(), new.town.as_deref(), since, c.max_candidates)
        };
        let candidates: Vec<TicketRecord> = candidates
            .map_err(store_error)?
            .into_iter()
            .filter(|t| t.ticket.received_at_ms <= new.time_ms)
            .collect();
        let mut earlier: Vec<xiaoguan_analytics::Ticket> = candidates.iter().map(analytics_ticket).collect();
        // Embeddings decide only when every ticket has one of the same model (dimension).
        if new.embedding.is_none() || earlier.iter().any(|t| t.embedding.as_ref().map(Vec::len) != new.embedding.as_ref().map(Vec::len)) {
            earlier.iter_mut().for_each(|t| t.embedding = None);
        }
        let mut new = new.clone();
        if earlier.iter().any(|t| t.embedding.is_none()) {
            new.embedding = None;
        }
        Ok(xiaoguan_analytics::find_same_matter(&new, &earlier, &c.analytics, None)
            .into_iter()
            .map(|m| {
                let t = &candidates[m.index];
                EarlierTicket {
                    id: t.id,
                    received_at_ms: t.ticket.received_at_ms,
                    reason: m.kind,
                    reason_label: m.kind.label(),
                    similarity: m.similarity,
                    closed: m.after_close,
                    days_between: m.days_between,
                    unit: t.effective_unit().map(String::from),
                    snippet: t.ticket.text.chars().take(60).collect(),
                }
            })
            .collect())
    }

    /// Store an assisted ticket and fill in `result.ticket_id` and `result.repeats`.
    pub fn record(&self, assist: &TicketAssist, input: &TicketInput, result: &mut TicketResult, meta: &RecordMeta) -> Result<TicketId> {
        let at = meta.received_at_ms.unwrap_or_else(xiaoguan_tickets::now_ms);
        let embedding = match (&result.embedding, &assist.embedder) {
            (Some(e), _) => Some(e.clone()),
            (None, Some(e)) => e.embed(&[&crate::classify::embedding_text(&result.masked_text)], TextKind::Query)?.pop(),
            (None, None) => None,
        };
        let reporter = meta.reporter.as_deref().and_then(|r| reporter_key(r, &self.salt));
        let title = input.title.as_deref().map(|t| xiaoguan_text::mask_pii(t).text);
        let (place, town) = place_of(title.as_deref(), result);
        let new = xiaoguan_analytics::Ticket {
            id: "new".into(),
            time_ms: at,
            title: title.clone().unwrap_or_default(),
            text: result.masked_text.clone(),
            reporter: reporter.clone(),
            place: place.clone(),
            town: town.clone(),
            embedding: embedding.clone(),
            ..Default::default()
        };
        let earlier = self.earlier(&new)?;
        let closed = earlier.iter().filter(|e| e.closed).count();
        result.repeats = Some(Repeats {
            count: earlier.len(),
            message: (!earlier.is_empty()).then(|| {
                if closed > 0 {
                    format!("此前已有 {} 件同类诉求（其中 {closed} 件已办结），请核对是否重复反映", earlier.len())
                } else {
                    format!("此前已有 {} 件同类诉求，请核对是否重复反映", earlier.len())
                }
            }),
            earlier,
        });
        let top = result.departments.first();
        let ticket = NewTicket {
            key_id: meta.key_id.clone(),
            received_at_ms: at,
            title,
            text: result.masked_text.clone(),
            reporter,
            place,
            town,
            request_type: result.request_type.as_ref().map(|f| f.label.clone()),
            domain: result.domain.as_ref().map(|f| f.label.clone()),
            category: result.category_l1.as_ref().map(|f| f.label.clone()),
            suggested_unit: top.map(|d| d.department.clone()),
            confidence: top.map(|d| d.confidence),
            needs_review: result.needs_review,
            escalate: result.signals.escalate,
            predictions: predictions(result),
            kb_versions: kb_versions(assist),
            models: models(assist),
            embedding,
        };
        let id = self.store.insert(&ticket).map_err(store_error)?;
        result.ticket_id = Some(id);
        Ok(id)
    }
}

/// What the heads said, with confidences, as stored for audit.
fn predictions(r: &TicketResult) -> Value {
    let field = |f: &Option<crate::ticket::LabeledField>| f.as_ref().map(|f| json!({"label": f.label, "confidence": f.confidence, "needs_review": f.needs_review, "source": f.source}));
    json!({
        "request_type": field(&r.request_type),
        "domain": field(&r.domain),
        "category_l1": field(&r.category_l1),
        "handling_category": {"label": r.handling_category.label, "confidence": r.handling_category.confidence},
        "departments": r.departments.iter().map(|d| json!({"unit": d.department, "confidence": d.confidence, "reasons": d.reasons, "mapped": d.mapped})).collect::<Vec<_>>(),
        "direct_dispatch": r.direct_dispatch.as_ref().map(|d| json!({"unit": d.unit, "rule": d.rule, "towns": d.towns.iter().map(|t| &t.town).collect::<Vec<_>>()})),
        "bundle": r.bundle.as_ref().map(|b| &b.name),
        "signals": r.signals.flags.iter().map(|f| format!("{:?}", f.kind)).collect::<Vec<_>>(),
        "escalate": r.signals.escalate,
        "dispatch_needs_review": r.dispatch_needs_review,
        "reply_handoff": r.suggested_reply.as_ref().map(|a| a.handoff),
        "citations": r.suggested_reply.as_ref().map(|a| a.citations.iter().map(|c| c.chunk_id.clone()).collect::<Vec<_>>()),
    })
}

fn kb_versions(a: &TicketAssist) -> Value {
    let mut m = serde_json::Map::new();
    if let Some(asst) = &a.assistant {
        for kb in asst.kbs() {
            m.insert(kb.def.id.clone(), json!(kb.version()));
        }
    }
    Value::Object(m)
}

fn models(a: &TicketAssist) -> Value {
    let c = &a.classifiers;
    let heads: serde_json::Map<String, Value> = [&c.request_type, &c.domain, &c.category_l1, &c.department]
        .into_iter()
        .flatten()
        .map(|m| (m.meta.name.clone(), json!({"trained_rows": m.meta.trained_rows, "data_sha256": m.meta.data_sha256})))
        .collect();
    json!({
        "embedder": a.embedder.as_ref().map(|e| e.model_id().to_string()),
        "generator": a.assistant.as_ref().and_then(|x| x.generator()).map(|g| g.model_id().to_string()),
        "classifiers": heads,
    })
}

pub(crate) fn store_error(e: xiaoguan_tickets::StoreError) -> AssistError {
    match e {
        xiaoguan_tickets::StoreError::InvalidInput(m) => AssistError::InvalidInput(m),
        xiaoguan_tickets::StoreError::Database(m) => AssistError::Internal(m),
    }
}
