//! Systems under test: the in-process pipeline, this service's native API, or any
//! OpenAI-compatible chat endpoint (another vendor's assistant, side by side).

use crate::suite::{System, SystemKind};
use crate::EvalError;
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::Arc;
use xiaoguan_assist::classify::{embedding_text, ClassifierModel};
use xiaoguan_assist::dispatch::DispatchRules;
use xiaoguan_assist::qa::{AnswerMode, AskRequest, Assistant};
use xiaoguan_assist::ticket::{TicketAssist, TicketInput};
use xiaoguan_kb::SearchOptions;
use xiaoguan_models::{Embedder, TextKind};

#[derive(Debug, Clone, Serialize, Default)]
pub struct AskOutput {
    pub text: String,
    pub handoff: bool,
    pub answered_by: String,
    /// Cited document ids, in citation order.
    pub cited_docs: Vec<String>,
    pub confidence: f64,
    /// What the system's evidence gate saw, when it says.
    pub evidence: Option<Value>,
    /// The region of each cited text that is another region's local rule (not national, not the
    /// home region's), as the system reports its citations' jurisdiction.
    pub foreign_citations: Vec<String>,
}

/// The regions of the cited texts that are another region's local rule.
pub fn foreign_regions(citations: Option<&Value>) -> Vec<String> {
    citations
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|c| c.pointer("/jurisdiction/scope").and_then(Value::as_str) == Some("foreign"))
                .map(|c| c.pointer("/jurisdiction/region").and_then(Value::as_str).unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct ClassOutput {
    pub ranked: Vec<String>,
    pub abstained: bool,
    pub confidence: f64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Retrieved {
    pub doc_id: String,
    pub chunk_id: String,
    pub text: String,
}

pub trait SystemUnderTest: Send + Sync {
    fn describe(&self) -> Value;
    fn ask(&self, question: &str, exclude_doc: Option<&str>) -> Result<AskOutput, EvalError>;
    fn classify(&self, text: &str, id: &str) -> Result<ClassOutput, EvalError>;
    fn search(&self, query: &str, k: usize) -> Result<Vec<Retrieved>, EvalError>;
    fn ticket(&self, text: &str, id: &str) -> Result<Value, EvalError>;
    /// The 弱信号 kinds raised for a text (`life_danger`, `mass_incident`, …).
    fn signals(&self, text: &str, id: &str) -> Result<Vec<String>, EvalError> {
        let v = self.ticket(text, id)?;
        Ok(v.pointer("/signals/flags")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|f| f.get("kind").and_then(Value::as_str).map(String::from)).collect())
            .unwrap_or_default())
    }
    /// Knowledge bases ranked for a question (routing suites with a router).
    fn route(&self, _question: &str) -> Result<Vec<String>, EvalError> {
        Err(EvalError::Input("this system cannot report its routing".into()))
    }
    /// The system's spelling of a gold label (department aliases).
    fn canonical_label(&self, label: &str) -> String {
        label.to_string()
    }
}

/// The in-process pipeline, built by the caller from a settings file.
pub struct Pipeline {
    pub assistant: Option<Arc<Assistant>>,
    pub tickets: Option<TicketAssist>,
    pub classifier: Option<ClassifierModel>,
    pub rules: Option<DispatchRules>,
    /// Rank departments with the rules (else the rules only canonicalize labels).
    pub dispatch: bool,
    pub rule_bonus: f32,
    pub embedder: Option<Arc<dyn Embedder>>,
    pub mode: AnswerMode,
    pub kbs: Vec<String>,
    pub router: Option<xiaoguan_assist::qa::Routing>,
    /// Ask with `any_region` (other regions' local texts not set aside): the baseline of the
    /// jurisdiction metric.
    pub any_region: bool,
    pub describe: Value,
}

fn internal(e: impl std::fmt::Display) -> EvalError {
    EvalError::System(e.to_string())
}

impl SystemUnderTest for Pipeline {
    fn describe(&self) -> Value {
        self.describe.clone()
    }

    fn ask(&self, question: &str, exclude_doc: Option<&str>) -> Result<AskOutput, EvalError> {
        let a = self.assistant.as_ref().ok_or_else(|| EvalError::Input("this suite needs knowledge bases (system.kbs)".into()))?;
        let req = AskRequest {
            question: question.to_string(),
            kbs: (!self.kbs.is_empty()).then(|| self.kbs.clone()),
            mode: self.mode,
            exclude_doc: exclude_doc.map(String::from),
            any_region: self.any_region,
            ..Default::default()
        };
        let ans = a.ask(&req, &mut |_| true).map_err(internal)?;
        let citations = serde_json::to_value(&ans.citations).ok();
        Ok(AskOutput {
            foreign_citations: foreign_regions(citations.as_ref()),
            text: ans.text,
            handoff: ans.handoff,
            answered_by: serde_json::to_value(ans.answered_by).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
            cited_docs: ans.citations.iter().map(|c| c.doc_id.clone()).collect(),
            confidence: ans.confidence as f64,
            evidence: ans.evidence.and_then(|e| serde_json::to_value(e).ok()),
        })
    }

    fn classify(&self, text: &str, id: &str) -> Result<ClassOutput, EvalError> {
        let m = self.classifier.as_ref().ok_or_else(|| EvalError::Input("this suite needs system.classifier".into()))?;
        let emb = match (&self.embedder, m.needs_embedding()) {
            (Some(e), true) => Some(e.embed(&[&embedding_text(text)], TextKind::Query).map_err(internal)?.remove(0)),
            _ => None,
        };
        // The item's own row is left out of the kNN memory (it may hold it).
        let (p, n) = m.distribution(text, emb.as_deref(), Some(id));
        let pred = m.to_prediction(&p, &n);
        let ranked = match (&self.rules, self.dispatch) {
            (Some(rules), true) => rules.rank(text, Some(&pred), self.rule_bonus).0.into_iter().map(|d| d.department).collect(),
            _ => pred.ranked.iter().map(|r| self.canonical_label(&r.label)).collect(),
        };
        Ok(ClassOutput { ranked, abstained: pred.abstained, confidence: pred.confidence as f64 })
    }

    fn search(&self, query: &str, k: usize) -> Result<Vec<Retrieved>, EvalError> {
        let a = self.assistant.as_ref().ok_or_else(|| EvalError::Input("this suite needs system.kbs".into()))?;
        let kb = a.kbs().first().ok_or_else(|| EvalError::Input("no knowledge base".into()))?;
        let hits = kb.search(query, &SearchOptions { limit: k, ..Default::default() }).map_err(internal)?;
        Ok(hits.into_iter().map(|h| Retrieved { doc_id: h.doc_id, chunk_id: h.chunk_id, text: h.text }).collect())
    }

    fn signals(&self, text: &str, _id: &str) -> Result<Vec<String>, EvalError> {
        // The detector needs no model: run it as ticket assist does.
        let report = xiaoguan_assist::signals::detect(text);
        Ok(report.flags.iter().filter_map(|f| serde_json::to_value(f.kind).ok().and_then(|v| v.as_str().map(String::from))).collect())
    }

    fn ticket(&self, text: &str, id: &str) -> Result<Value, EvalError> {
        let t = self.tickets.as_ref().ok_or_else(|| EvalError::Input("ticket assist is not set up".into()))?;
        let r = t.assist(&TicketInput { text: text.to_string(), exclude_id: Some(id.to_string()), ..Default::default() }).map_err(internal)?;
        serde_json::to_value(r).map_err(internal)
    }

    fn route(&self, question: &str) -> Result<Vec<String>, EvalError> {
        let a = self.assistant.as_ref().ok_or_else(|| EvalError::Input("routing needs system.kbs".into()))?;
        let strategy = self.router.ok_or_else(|| EvalError::Input("routing needs system.router".into()))?;
        Ok(a.route(question, strategy).map_err(internal)?.into_iter().map(|(kb, _)| kb).collect())
    }

    /// A gold label in the spelling the system ranks: the home city's unit when the rules have a
    /// unit directory.
    fn canonical_label(&self, label: &str) -> String {
        match &self.rules {
            Some(r) if r.units.is_some() => r.unit_name(label),
            Some(r) => r.canonical(label),
            None => label.to_string(),
        }
    }
}

/// A system behind HTTP: this service's native API or an OpenAI-compatible endpoint.
pub struct Http {
    pub system: System,
    agent: ureq::Agent,
    key: Option<String>,
}

impl Http {
    pub fn new(system: System) -> Result<Self, EvalError> {
        if system.url.is_none() {
            return Err(EvalError::Input("an HTTP system needs system.url".into()));
        }
        let key = system.api_key_env.as_ref().and_then(|v| std::env::var(v).ok());
        let agent = ureq::Agent::config_builder().timeout_global(Some(std::time::Duration::from_secs(300))).build().into();
        Ok(Self { system, agent, key })
    }

    fn post(&self, path: &str, body: Value) -> Result<Value, EvalError> {
        let url = format!("{}{path}", self.system.url.as_deref().unwrap_or_default().trim_end_matches('/'));
        let mut req = self.agent.post(&url);
        if let Some(k) = &self.key {
            req = req.header("Authorization", &format!("Bearer {k}"));
        }
        let mut resp = req.send_json(&body).map_err(|e| EvalError::System(format!("POST {url}: {e}")))?;
        resp.body_mut().read_json::<Value>().map_err(|e| EvalError::System(format!("POST {url}: {e}")))
    }
}

fn docs_of(citations: Option<&Value>) -> Vec<String> {
    citations
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|c| c.get("doc_id").and_then(Value::as_str).map(String::from)).collect())
        .unwrap_or_default()
}

impl SystemUnderTest for Http {
    fn describe(&self) -> Value {
        json!({"kind": format!("{:?}", self.system.kind).to_lowercase(), "url": self.system.url, "model": self.system.model})
    }

    fn ask(&self, question: &str, _exclude_doc: Option<&str>) -> Result<AskOutput, EvalError> {
        match self.system.kind {
            SystemKind::Openai => {
                let v = self.post(
                    "/v1/chat/completions",
                    json!({"model": self.system.model.clone().unwrap_or_else(|| "auto".into()), "messages": [{"role": "user", "content": question}], "stream": false}),
                )?;
                let text = v.pointer("/choices/0/message/content").and_then(Value::as_str).unwrap_or_default().to_string();
                let ext = v.get("xiaoguan");
                let handoff = ext.and_then(|x| x.get("handoff")).and_then(Value::as_bool).unwrap_or_else(|| {
                    self.system.handoff_phrase.as_deref().is_some_and(|p| text.contains(p))
                });
                Ok(AskOutput {
                    handoff,
                    answered_by: ext.and_then(|x| x.get("answered_by")).and_then(Value::as_str).unwrap_or("remote").to_string(),
                    cited_docs: docs_of(ext.and_then(|x| x.get("citations"))),
                    foreign_citations: foreign_regions(ext.and_then(|x| x.get("citations"))),
                    confidence: ext.and_then(|x| x.get("confidence")).and_then(Value::as_f64).unwrap_or(0.0),
                    evidence: ext.and_then(|x| x.get("evidence")).cloned(),
                    text,
                })
            }
            _ => {
                let mut body = json!({"question": question, "mode": self.system.mode.clone().unwrap_or_else(|| "extractive".into())});
                if !self.system.kbs.is_empty() {
                    body["kbs"] = json!(self.system.kbs);
                }
                if self.system.any_region {
                    body["any_region"] = json!(true);
                }
                let v = self.post("/v1/ask", body)?;
                Ok(AskOutput {
                    text: v.get("text").and_then(Value::as_str).unwrap_or_default().to_string(),
                    handoff: v.get("handoff").and_then(Value::as_bool).unwrap_or(true),
                    answered_by: v.get("answered_by").and_then(Value::as_str).unwrap_or_default().to_string(),
                    cited_docs: docs_of(v.get("citations")),
                    foreign_citations: foreign_regions(v.get("citations")),
                    confidence: v.get("confidence").and_then(Value::as_f64).unwrap_or(0.0),
                    evidence: v.get("evidence").cloned(),
                })
            }
        }
    }

    fn classify(&self, text: &str, _id: &str) -> Result<ClassOutput, EvalError> {
        let v = self.post("/v1/classify", json!({"text": text, "classifier": self.system.classifier}))?;
        let ranked = v.get("ranked").and_then(Value::as_array).map(|a| a.iter().filter_map(|r| r.get("label").and_then(Value::as_str).map(String::from)).collect()).unwrap_or_default();
        Ok(ClassOutput {
            ranked,
            abstained: v.get("abstained").and_then(Value::as_bool).unwrap_or(false),
            confidence: v.get("confidence").and_then(Value::as_f64).unwrap_or(0.0),
        })
    }

    fn search(&self, query: &str, k: usize) -> Result<Vec<Retrieved>, EvalError> {
        let v = self.post("/v1/search", json!({"query": query, "kb": self.system.kbs.first(), "limit": k}))?;
        Ok(v.get("hits")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|h| Retrieved {
                        doc_id: h.get("doc_id").and_then(Value::as_str).unwrap_or_default().into(),
                        chunk_id: h.get("chunk_id").and_then(Value::as_str).unwrap_or_default().into(),
                        text: h.get("text").and_then(Value::as_str).unwrap_or_default().into(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    fn ticket(&self, text: &str, _id: &str) -> Result<Value, EvalError> {
        self.post("/v1/tickets/assist", json!({"text": text}))
    }
}
