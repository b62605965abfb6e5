//! What the store keeps. Text fields are masked (xiaoguan_text::mask_pii) before they are
//! written; reporters are kept only as salted hashes.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub type TicketId = i64;

/// An assisted ticket as it is stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NewTicket {
    /// The key (agent) that asked for the assist.
    pub key_id: String,
    /// When the ticket came in (unix ms).
    pub received_at_ms: i64,
    pub title: Option<String>,
    /// The ticket text, masked.
    pub text: String,
    /// The reporter as a salted hash (`reporter_key`), never the phone or name.
    pub reporter: Option<String>,
    /// The place the text names, coarse · fine (e.g. "南城街道·鸿福路"), for hot issues.
    pub place: Option<String>,
    /// The Dongguan town or street it names, else the district or town the text names:
    /// repeats are looked up by it.
    pub town: Option<String>,
    pub request_type: Option<String>,
    pub domain: Option<String>,
    pub category: Option<String>,
    /// The unit assist suggested dispatching to.
    pub suggested_unit: Option<String>,
    /// The department head's confidence in `suggested_unit` (0..1).
    pub confidence: Option<f32>,
    /// Assist flagged it for a person's review (a head abstained or was unsure).
    pub needs_review: bool,
    /// A 弱信号 asked for escalation.
    pub escalate: bool,
    /// The assist's predictions as returned (labels, confidences, reasons), for audit.
    pub predictions: Value,
    /// KB id → version used.
    pub kb_versions: Value,
    /// Role → model id (embedder, generator, classifier versions).
    pub models: Value,
    /// The ticket's embedding (e5 query vector), for repeats and hot-issue grouping.
    pub embedding: Option<Vec<f32>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Accepted,
    Edited,
    Rejected,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accepted => "accepted",
            Verdict::Edited => "edited",
            Verdict::Rejected => "rejected",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "accepted" | "accept" => Some(Verdict::Accepted),
            "edited" | "edit" => Some(Verdict::Edited),
            "rejected" | "reject" => Some(Verdict::Rejected),
            _ => None,
        }
    }
}

/// The agent's decision on the suggestions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Decision {
    pub key_id: String,
    pub at_ms: i64,
    pub verdict: Verdict,
    /// The unit the agent dispatched to (None: as suggested).
    pub unit: Option<String>,
    pub request_type: Option<String>,
    pub domain: Option<String>,
    pub category: Option<String>,
    /// The reply as sent (masked when stored).
    pub reply: Option<String>,
    /// The unit that finally handled it (办结单位), when known.
    pub final_unit: Option<String>,
    /// The ticket is closed (办结).
    pub closed: bool,
}

/// A reviewer's confirmed labels: these become training rows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Review {
    pub reviewer: String,
    pub at_ms: i64,
    pub request_type: Option<String>,
    pub domain: Option<String>,
    pub category: Option<String>,
    pub unit: Option<String>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TicketRecord {
    pub id: TicketId,
    #[serde(flatten)]
    pub ticket: NewTicket,
    pub decision: Option<Decision>,
    pub review: Option<Review>,
}

impl TicketRecord {
    /// The unit it really went to: the final unit, else the agent's, else the suggestion.
    pub fn effective_unit(&self) -> Option<&str> {
        let d = self.decision.as_ref();
        d.and_then(|d| d.final_unit.as_deref())
            .or_else(|| d.and_then(|d| d.unit.as_deref()))
            .or(self.ticket.suggested_unit.as_deref())
    }
    /// Whether the agent sent it somewhere other than suggested.
    pub fn unit_changed(&self) -> bool {
        match (self.decision.as_ref().and_then(|d| d.unit.as_deref()), self.ticket.suggested_unit.as_deref()) {
            (Some(chosen), Some(suggested)) => chosen != suggested,
            (Some(_), None) => true,
            _ => false,
        }
    }
    pub fn closed(&self) -> bool {
        self.decision.as_ref().is_some_and(|d| d.closed)
    }
}

#[derive(Debug, Clone, Default)]
pub struct TicketQuery {
    /// Only this key's tickets (an agent sees their own).
    pub key_id: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Only tickets with ids below this (paging backwards).
    pub before_id: Option<TicketId>,
    pub limit: usize,
}

/// One piece of agent feedback on a suggestion (the former JSONL log's record).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FeedbackEntry {
    pub id: String,
    pub at_ms: i64,
    pub key_id: String,
    pub ticket_id: Option<TicketId>,
    pub target: String,
    /// accept | edit | reject
    pub verdict: String,
    pub input: String,
    pub suggestion: String,
    pub edited: Option<String>,
    pub comment: Option<String>,
    pub citations: Vec<String>,
}

/// The stored key of a reporter (a phone number, an account id): a salted SHA-256, so repeats
/// by the same person can be found without keeping who they are.
pub fn reporter_key(raw: &str, salt: &str) -> Option<String> {
    let norm: String = raw.chars().filter(|c| !c.is_whitespace() && *c != '-').collect();
    if norm.is_empty() {
        return None;
    }
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update([0]);
    h.update(norm.as_bytes());
    Some(format!("r-{}", &hex::encode(h.finalize())[..16]))
}

pub(crate) fn mask(s: &str) -> String {
    xiaoguan_text::mask_pii(s).text
}

pub(crate) fn mask_opt(s: &Option<String>) -> Option<String> {
    s.as_deref().map(mask)
}

pub(crate) fn vector_to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(crate) fn vector_from_bytes(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reporter_keys_are_stable_salted_and_hide_the_number() {
        let a = reporter_key("138 0013 8000", "s1").unwrap();
        assert_eq!(a, reporter_key("13800138000", "s1").unwrap());
        assert_ne!(a, reporter_key("13800138000", "s2").unwrap());
        assert!(!a.contains("138"));
        assert_eq!(reporter_key("  ", "s1"), None);
    }

    #[test]
    fn vectors_round_trip_through_bytes() {
        let v = vec![0.5f32, -1.25, 3.0e-7];
        assert_eq!(vector_from_bytes(&vector_to_bytes(&v)), v);
    }
}
