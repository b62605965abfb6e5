//! The feedback log of earlier versions (an fsync'd JSONL file) moved into the store, once.

use crate::record::FeedbackEntry;
use crate::{Result, StoreError, TicketStore};
use serde::Deserialize;
use std::io::BufRead;
use std::path::Path;

/// A line of the old log.
#[derive(Deserialize)]
struct OldRecord {
    id: String,
    at_unix_ms: u128,
    key_id: String,
    target: String,
    verdict: String,
    input: String,
    suggestion: String,
    #[serde(default)]
    edited: Option<String>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    citations: Vec<String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    pub imported: usize,
    /// Already in the store (an earlier import).
    pub already: usize,
    /// Lines that do not parse: a torn last line from a crash, or damage. Named in `bad_lines`.
    pub skipped: usize,
}

/// Import every record of a feedback JSONL log; ids already stored are left alone, so running
/// it twice imports nothing the second time. Unparseable lines are skipped and their numbers
/// returned (a torn last line is expected after a crash).
pub fn import_feedback_log(store: &dyn TicketStore, path: &Path) -> Result<(ImportReport, Vec<usize>)> {
    let f = std::fs::File::open(path).map_err(|e| StoreError::InvalidInput(format!("cannot read {}: {e}", path.display())))?;
    let mut report = ImportReport::default();
    let mut bad = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| StoreError::InvalidInput(format!("{}:{}: {e}", path.display(), i + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        let Ok(old) = serde_json::from_str::<OldRecord>(&line) else {
            report.skipped += 1;
            bad.push(i + 1);
            continue;
        };
        let entry = FeedbackEntry {
            id: old.id,
            at_ms: old.at_unix_ms as i64,
            key_id: old.key_id,
            ticket_id: None,
            target: old.target,
            verdict: old.verdict,
            input: old.input,
            suggestion: old.suggestion,
            edited: old.edited,
            comment: old.comment,
            citations: old.citations,
        };
        if store.add_feedback(&entry)? {
            report.imported += 1;
        } else {
            report.already += 1;
        }
    }
    Ok((report, bad))
}
