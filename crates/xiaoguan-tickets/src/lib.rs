//! The ticket store: every assisted ticket (masked, never the raw phone or ID number), its
//! predictions and confidences, the KB versions and models behind them, the agent's decision, a
//! reviewer's confirmed labels and the agents' feedback — in SQLite (one file, the embedded
//! default) or PostgreSQL (shared by service replicas), behind one trait.
//!
//! Layering: below `assist` and `server`; knows nothing of models, HTTP or the vector store.

pub mod conversation;
pub mod import;
pub mod postgres;
pub mod record;
pub mod sqlite;

pub use conversation::{ConversationTurn, MAX_CONVERSATION_ID_CHARS};
pub use record::*;

use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The caller's fault: a bad id, a bad URL, a malformed row.
    #[error("{0}")]
    InvalidInput(String),
    /// The database's: unreachable, a failed statement, a newer schema than this binary knows.
    #[error("ticket store: {0}")]
    Database(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// One ticket store. Every method is one transaction: when it returns `Ok`, the change is
/// committed (and, in SQLite, fsync'd).
pub trait TicketStore: Send + Sync {
    /// "sqlite" or "postgres".
    fn backend(&self) -> &'static str;
    /// Where it lives, without any password.
    fn location(&self) -> String;
    /// The schema version after migrations.
    fn schema_version(&self) -> Result<i64>;

    /// Store an assisted ticket (text, title and reply are masked again here, whatever the caller did).
    fn insert(&self, ticket: &NewTicket) -> Result<TicketId>;
    /// Store many tickets in one transaction (importing history): all or none. Ids in order.
    fn insert_many(&self, tickets: &[NewTicket]) -> Result<Vec<TicketId>> {
        tickets.iter().map(|t| self.insert(t)).collect()
    }
    fn get(&self, id: TicketId) -> Result<Option<TicketRecord>>;
    /// Newest first, filtered; `before_id` pages backwards.
    fn list(&self, query: &TicketQuery) -> Result<Vec<TicketRecord>>;
    fn count(&self) -> Result<u64>;
    /// The agent's decision on a ticket (the latest one wins). False when there is no such ticket.
    fn decide(&self, id: TicketId, decision: &Decision) -> Result<bool>;
    /// Delete one ticket and what hangs off it. False when there is no such ticket.
    fn delete(&self, id: TicketId) -> Result<bool>;
    /// Retention: delete tickets received before `before_ms`; returns how many.
    fn purge_before(&self, before_ms: i64) -> Result<u64>;
    /// Earlier tickets that may be the same matter: same reporter, or same town (the `town`
    /// column: a Dongguan town/street, or the district the text names), received at or after
    /// `since_ms`, newest first, at most `limit`.
    fn prior_candidates(&self, reporter: Option<&str>, town: Option<&str>, since_ms: i64, limit: usize) -> Result<Vec<TicketRecord>>;

    /// Tickets to review: the classifiers were unsure, or an agent changed a suggestion; not yet
    /// reviewed. Oldest first.
    fn review_queue(&self, limit: usize) -> Result<Vec<TicketRecord>>;
    /// A reviewer's confirmed labels. False when there is no such ticket.
    fn review(&self, id: TicketId, review: &Review) -> Result<bool>;
    /// Every reviewed ticket (the training rows of the labelling loop), oldest first.
    fn reviewed(&self) -> Result<Vec<TicketRecord>>;

    /// Append feedback; an entry whose id is already stored is skipped (so an import runs once).
    /// Returns whether it was new.
    fn add_feedback(&self, entry: &FeedbackEntry) -> Result<bool>;
    /// Feedback, oldest first.
    fn feedback(&self) -> Result<Vec<FeedbackEntry>>;

    /// Every ticket, oldest first, streamed (analytics over many tickets).
    fn scan(&self, each: &mut dyn FnMut(TicketRecord) -> Result<()>) -> Result<u64>;

    /// A conversation's turns, oldest first (content masked); empty when `owner` has no
    /// conversation `id` (another owner's conversation of that id is never returned).
    fn conversation(&self, owner: &str, id: &str) -> Result<Vec<ConversationTurn>>;
    /// Append turns to a conversation (created when new) and keep only its newest `max_turns`,
    /// in one transaction: appends from several replicas at once each land whole, none is lost.
    /// Refused (`InvalidInput`): an empty owner or id, an id over `MAX_CONVERSATION_ID_CHARS`,
    /// `max_turns` 0, more than `max_turns` turns at once. Appending no turns changes nothing.
    fn append_conversation(&self, owner: &str, id: &str, turns: &[ConversationTurn], max_turns: usize, now_ms: i64) -> Result<()>;
    /// Retention: delete conversations last appended to before `before_ms`; returns how many.
    fn purge_conversations_before(&self, before_ms: i64) -> Result<u64>;
    /// Keep the `keep` most recently appended-to conversations, delete the rest; returns how many.
    fn trim_conversations(&self, keep: usize) -> Result<u64>;
}

/// Open the store a URL names: `sqlite:///abs/path.db` or a bare path for SQLite,
/// `postgres://…` / `postgresql://…` for PostgreSQL.
pub fn open(url: &str) -> Result<Arc<dyn TicketStore>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PostgresStore::connect(url)?))
    } else {
        let path = url.strip_prefix("sqlite://").unwrap_or(url);
        if path.is_empty() {
            return Err(StoreError::InvalidInput("the database url names no file".into()));
        }
        Ok(Arc::new(sqlite::SqliteStore::open(std::path::Path::new(path))?))
    }
}

/// A URL with its password replaced by `***` (for logs and `/readyz`).
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords_only() {
        assert_eq!(super::redact_url("postgres://xg:secret@127.0.0.1:5432/xg"), "postgres://xg:***@127.0.0.1:5432/xg");
        assert_eq!(super::redact_url("postgres://127.0.0.1/xg"), "postgres://127.0.0.1/xg");
        assert_eq!(super::redact_url("/tmp/a.db"), "/tmp/a.db");
    }
}
