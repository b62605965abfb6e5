//! Agent feedback on suggestions (accept / edit / reject). Kept in the ticket store (committed
//! before the response; masked there), exported as labelled JSONL for evaluation and retraining.

use serde::{Deserialize, Serialize};
use std::io::Write;
use xiaoguan_tickets::{FeedbackEntry, TicketId, TicketStore};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Accept,
    Edit,
    Reject,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Accept => "accept",
            Verdict::Edit => "edit",
            Verdict::Reject => "reject",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// What the suggestion was about: "reply", "dispatch", "request_type", "domain", "answer"…
    #[schema(min_length = 1, max_length = 64, pattern = r"\S")]
    pub target: String,
    /// accept | edit | reject (`edit` with the edited text)
    #[schema(value_type = String, pattern = "^(accept|edit|reject)$")]
    pub verdict: Verdict,
    /// The ticket or question text (masked before it is stored).
    #[schema(max_length = 5000)]
    pub input: String,
    /// The suggestion as shown.
    #[schema(max_length = 20000)]
    pub suggestion: String,
    /// The agent's edited text (for `edit`).
    #[serde(default)]
    pub edited: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
    /// Ids of the citations the suggestion carried.
    #[serde(default)]
    pub citations: Vec<String>,
    /// The stored ticket it is about (`ticket_id` of the assist response), if any.
    #[serde(default, deserialize_with = "crate::error::opt_whole")]
    #[schema(minimum = 1)]
    pub ticket_id: Option<TicketId>,
}

/// A new entry for the store: a fresh id, now, the caller's key.
pub fn entry(key_id: &str, r: FeedbackRequest) -> FeedbackEntry {
    let now = xiaoguan_tickets::now_ms();
    FeedbackEntry {
        id: format!("fb-{now}-{:08x}", rand_suffix()),
        at_ms: now,
        key_id: key_id.to_string(),
        ticket_id: r.ticket_id,
        target: r.target,
        verdict: r.verdict.as_str().into(),
        input: r.input,
        suggestion: r.suggestion,
        edited: r.edited,
        comment: r.comment,
        citations: r.citations,
    }
}

fn rand_suffix() -> u32 {
    let mut b = [0u8; 4];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    u32::from_le_bytes(b)
}

/// Labelled JSONL for evaluation and retraining: {id, input, target, label, text, suggestion…}.
pub fn export(store: &dyn TicketStore, out: &mut dyn Write) -> anyhow::Result<usize> {
    let mut n = 0;
    for f in store.feedback()? {
        let label = match f.verdict.as_str() {
            "accept" => "accepted",
            "edit" => "edited",
            _ => "rejected",
        };
        let text = f.edited.clone().unwrap_or_else(|| f.suggestion.clone());
        let row = serde_json::json!({
            "id": f.id, "ticket_id": f.ticket_id, "input": f.input, "target": f.target, "label": label,
            "text": if label == "rejected" { serde_json::Value::Null } else { text.into() },
            "suggestion": f.suggestion, "citations": f.citations, "comment": f.comment,
        });
        writeln!(out, "{row}")?;
        n += 1;
    }
    Ok(n)
}

/// Move an earlier version's feedback log into the store, once: imported ids are skipped, and
/// the file is renamed `<name>.imported` after a complete import.
pub fn import_legacy_log(store: &dyn TicketStore, path: &std::path::Path) -> anyhow::Result<Option<xiaoguan_tickets::import::ImportReport>> {
    if !path.exists() {
        return Ok(None);
    }
    let (report, bad) = match xiaoguan_tickets::import::import_feedback_log(store, path) {
        Ok(r) => r,
        // Another replica starting at the same time got there first and renamed it.
        Err(_) if !path.exists() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if !bad.is_empty() {
        tracing::warn!("{}: lines {bad:?} do not parse (a torn last line after a crash is expected) and were skipped", path.display());
    }
    let mut done = path.as_os_str().to_owned();
    done.push(".imported");
    match std::fs::rename(path, &done) {
        Ok(()) => {}
        // Another replica starting at the same time imported it and renamed it first.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Some(report)),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("renaming {}", path.display()))),
    }
    tracing::warn!("feedback log {} imported into the ticket store ({} new, {} already there)", path.display(), report.imported, report.already);
    Ok(Some(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_masked_exports_labelled_and_imports_an_old_log_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = xiaoguan_tickets::sqlite::SqliteStore::open(&dir.path().join("t.db")).unwrap();
        let req = FeedbackRequest {
            target: "reply".into(),
            verdict: Verdict::Edit,
            input: "我的电话13812345678".into(),
            suggestion: "原建议".into(),
            edited: Some("改后".into()),
            comment: None,
            citations: vec!["c1".into()],
            ticket_id: None,
        };
        store.add_feedback(&entry("agent-1", req)).unwrap();
        let old = dir.path().join("feedback.jsonl");
        std::fs::write(
            &old,
            "{\"id\":\"fb-1\",\"at_unix_ms\":5,\"key_id\":\"a\",\"target\":\"reply\",\"verdict\":\"accept\",\"input\":\"x\",\"suggestion\":\"y\",\"edited\":null,\"comment\":null,\"citations\":[]}\n{\"torn\":",
        )
        .unwrap();
        let r = import_legacy_log(&store, &old).unwrap().unwrap();
        assert_eq!((r.imported, r.skipped), (1, 1));
        assert!(!old.exists() && dir.path().join("feedback.jsonl.imported").exists());
        assert!(import_legacy_log(&store, &old).unwrap().is_none(), "imported once");
        let mut out = Vec::new();
        assert_eq!(export(&store, &mut out).unwrap(), 2);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\"label\":\"edited\"") && text.contains("改后") && text.contains("\"label\":\"accepted\""));
        assert!(!text.contains("13812345678"), "personal data is masked before it is stored");
    }
}
