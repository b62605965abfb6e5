//! Agent feedback on suggestions (accept / edit / reject), kept in an fsync'd append-only JSONL
//! log: every accepted request is on disk before the response; a torn last line (a crash mid-
//! write) is skipped on export. Exported as labelled JSONL for evaluation and retraining.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Accept,
    Edit,
    Reject,
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeedbackRecord {
    pub id: String,
    pub at_unix_ms: u128,
    pub key_id: String,
    #[serde(flatten)]
    pub request: FeedbackRequest,
}

pub struct FeedbackLog {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl FeedbackLog {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new().create(true).append(true).read(true).open(path)?;
        // A crash mid-write leaves a torn last line: end it, so the next record starts on its own line.
        let len = file.metadata()?.len();
        if len > 0 {
            use std::io::{Read, Seek, SeekFrom};
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
                file.sync_data()?;
            }
        }
        Ok(Self { path: path.to_path_buf(), file: Mutex::new(file) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append and fsync; the record is durable when this returns.
    pub fn append(&self, key_id: &str, mut request: FeedbackRequest) -> std::io::Result<FeedbackRecord> {
        request.input = xiaoguan_text::mask_pii(&request.input).text;
        request.suggestion = xiaoguan_text::mask_pii(&request.suggestion).text;
        request.edited = request.edited.map(|e| xiaoguan_text::mask_pii(&e).text);
        request.comment = request.comment.map(|c| xiaoguan_text::mask_pii(&c).text);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        let record = FeedbackRecord { id: format!("fb-{now}-{:04x}", rand_suffix()), at_unix_ms: now, key_id: key_id.to_string(), request };
        let mut line = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(&line)?;
        f.sync_data()?;
        Ok(record)
    }
}

fn rand_suffix() -> u16 {
    let mut b = [0u8; 2];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    u16::from_le_bytes(b)
}

/// Labelled JSONL for evaluation and retraining: {input, target, label, text, suggestion}.
pub fn export(log: &Path, out: &mut dyn Write) -> std::io::Result<(usize, usize)> {
    let f = std::fs::File::open(log)?;
    let (mut ok, mut skipped) = (0, 0);
    for line in std::io::BufReader::new(f).lines() {
        let line = line?;
        match serde_json::from_str::<FeedbackRecord>(&line) {
            Ok(r) => {
                let label = match r.request.verdict {
                    Verdict::Accept => "accepted",
                    Verdict::Edit => "edited",
                    Verdict::Reject => "rejected",
                };
                let text = r.request.edited.clone().unwrap_or_else(|| r.request.suggestion.clone());
                let row = serde_json::json!({
                    "id": r.id, "input": r.request.input, "target": r.request.target, "label": label,
                    "text": if r.request.verdict == Verdict::Reject { serde_json::Value::Null } else { text.into() },
                    "suggestion": r.request.suggestion, "citations": r.request.citations, "comment": r.request.comment,
                });
                writeln!(out, "{row}")?;
                ok += 1;
            }
            Err(_) => skipped += 1,
        }
    }
    Ok((ok, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_masks_and_exports_skipping_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fb/feedback.jsonl");
        let log = FeedbackLog::open(&p).unwrap();
        let req = FeedbackRequest {
            target: "reply".into(),
            verdict: Verdict::Edit,
            input: "我的电话13812345678".into(),
            suggestion: "原建议".into(),
            edited: Some("改后".into()),
            comment: None,
            citations: vec!["c1".into()],
        };
        log.append("agent-1", req).unwrap();
        std::fs::OpenOptions::new().append(true).open(&p).unwrap().write_all(b"{\"torn\":").unwrap();
        // Reopened after the crash: the next record lands on its own line.
        let log = FeedbackLog::open(&p).unwrap();
        let again = FeedbackRequest { target: "reply".into(), verdict: Verdict::Accept, input: "x".into(), suggestion: "y".into(), edited: None, comment: Some("张先生说谢谢".into()), citations: vec![] };
        log.append("agent-1", again).unwrap();
        let mut out = Vec::new();
        let (ok, skipped) = export(&p, &mut out).unwrap();
        assert_eq!((ok, skipped), (2, 1));
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\"label\":\"edited\"") && text.contains("改后"));
        assert!(!text.contains("13812345678"), "personal data is masked before it is stored");
    }
}
