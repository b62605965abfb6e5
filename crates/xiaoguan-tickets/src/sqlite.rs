//! SQLite, the embedded default: one file under the home folder, WAL journal, `synchronous =
//! FULL` (a commit is fsync'd before it returns), schema migrations in order, a busy timeout so
//! several processes can write the same file.

use crate::conversation::{self, ConversationTurn};
use crate::record::*;
use crate::{Result, StoreError, TicketStore};
use rusqlite::{params, Connection, Row};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The migrations, in order; `MIGRATIONS[i]` takes the schema from version i to i + 1.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: tickets with predictions and the agent's decision; the feedback log.
    "CREATE TABLE tickets (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        key_id TEXT NOT NULL,
        received_at_ms INTEGER NOT NULL,
        title TEXT,
        text TEXT NOT NULL,
        reporter TEXT,
        place TEXT,
        town TEXT,
        request_type TEXT,
        domain TEXT,
        category TEXT,
        suggested_unit TEXT,
        confidence REAL,
        needs_review INTEGER NOT NULL DEFAULT 0,
        escalate INTEGER NOT NULL DEFAULT 0,
        predictions TEXT NOT NULL,
        kb_versions TEXT NOT NULL,
        models TEXT NOT NULL,
        embedding BLOB,
        decision TEXT,
        decision_verdict TEXT
     );
     CREATE INDEX tickets_received ON tickets(received_at_ms);
     CREATE INDEX tickets_key ON tickets(key_id, id);
     CREATE TABLE feedback (
        id TEXT PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        key_id TEXT NOT NULL,
        ticket_id INTEGER,
        target TEXT NOT NULL,
        verdict TEXT NOT NULL,
        input TEXT NOT NULL,
        suggestion TEXT NOT NULL,
        edited TEXT,
        comment TEXT,
        citations TEXT NOT NULL
     );",
    // 2: the labelling loop (reviews, and which tickets an agent corrected) and the lookups
    // behind repeats. Tickets decided under version 1 get their `corrected` flag from the verdict.
    "ALTER TABLE tickets ADD COLUMN corrected INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE tickets ADD COLUMN review TEXT;
     ALTER TABLE tickets ADD COLUMN reviewed_at_ms INTEGER;
     UPDATE tickets SET corrected = 1 WHERE decision_verdict IN ('edited', 'rejected');
     CREATE INDEX tickets_reporter ON tickets(reporter, received_at_ms);
     CREATE INDEX tickets_town ON tickets(town, received_at_ms);
     CREATE INDEX tickets_queue ON tickets(reviewed_at_ms, needs_review, corrected);
     CREATE INDEX feedback_ticket ON feedback(ticket_id);",
    // 3: the answer API's conversations, shared by replicas. `next_seq` numbers the turns: an
    // append reserves its range by bumping it, so turn order never depends on clocks.
    "CREATE TABLE conversations (
        owner TEXT NOT NULL,
        id TEXT NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        next_seq INTEGER NOT NULL,
        PRIMARY KEY (owner, id)
     );
     CREATE INDEX conversations_updated ON conversations(updated_at_ms);
     CREATE TABLE conversation_turns (
        owner TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        PRIMARY KEY (owner, conversation_id, seq),
        FOREIGN KEY (owner, conversation_id) REFERENCES conversations(owner, id) ON DELETE CASCADE
     );",
];

const COLUMNS: &str = "id, key_id, received_at_ms, title, text, reporter, place, town, request_type, domain, category, \
    suggested_unit, confidence, needs_review, escalate, predictions, kb_versions, models, embedding, decision, review";

pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

fn json_err(e: serde_json::Error) -> StoreError {
    StoreError::Database(format!("a stored JSON column does not parse: {e}"))
}

impl SqliteStore {
    /// Open (creating the file and its folder) and migrate to the newest schema.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_at_version(path, MIGRATIONS.len())
    }

    /// Open and migrate only up to `version` (tests of upgrading from an older schema).
    pub fn open_at_version(path: &Path, version: usize) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::InvalidInput(format!("cannot create {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path).map_err(|e| StoreError::InvalidInput(format!("cannot open the ticket database {}: {e}", path.display())))?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(db)?;
        // Switching a new file to WAL takes an exclusive lock and SQLite does not call the busy
        // handler for it: two processes opening one new file at once (two replicas starting) got
        // "database is locked". Retry within the same bound as the busy timeout.
        let started = std::time::Instant::now();
        let mode: String = loop {
            match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)) {
                Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::DatabaseBusy && started.elapsed() < std::time::Duration::from_secs(10) => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other.map_err(db)?,
            }
        };
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Database(format!("{} cannot use a WAL journal (got {mode})", path.display())));
        }
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;").map_err(db)?;
        let store = Self { path: path.to_path_buf(), conn: Mutex::new(conn) };
        store.migrate(version)?;
        Ok(store)
    }

    fn migrate(&self, target: usize) -> Result<()> {
        let mut conn = self.lock();
        // IMMEDIATE: two processes opening a new file at once do not both run migration 1.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(db)?;
        tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at_ms INTEGER NOT NULL)").map_err(db)?;
        let current: i64 = tx.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0)).map_err(db)?;
        if current as usize > MIGRATIONS.len() {
            return Err(StoreError::Database(format!(
                "{} has schema version {current}, newer than this binary knows ({}): upgrade xiaoguan",
                self.path.display(),
                MIGRATIONS.len()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().take(target).skip(current as usize) {
            tx.execute_batch(sql).map_err(|e| StoreError::Database(format!("migration {} failed: {e}", i + 1)))?;
            tx.execute("INSERT INTO schema_migrations (version, applied_at_ms) VALUES (?1, ?2)", params![i as i64 + 1, now_ms()]).map_err(db)?;
        }
        tx.commit().map_err(db)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn query(&self, sql: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<TicketRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(sql).map_err(db)?;
        let rows = stmt.query_map(args, read_row).map_err(db)?;
        rows.map(|r| r.map_err(db).and_then(|r| r)).collect()
    }
}

fn read_row(r: &Row) -> rusqlite::Result<Result<TicketRecord>> {
    let json = |s: String| serde_json::from_str::<serde_json::Value>(&s).map_err(json_err);
    let (predictions, kb_versions, models) = (r.get::<_, String>(15)?, r.get::<_, String>(16)?, r.get::<_, String>(17)?);
    let embedding: Option<Vec<u8>> = r.get(18)?;
    let decision: Option<String> = r.get(19)?;
    let review: Option<String> = r.get(20)?;
    let build = || -> Result<TicketRecord> {
        Ok(TicketRecord {
            id: r.get(0).map_err(db)?,
            ticket: NewTicket {
                key_id: r.get(1).map_err(db)?,
                received_at_ms: r.get(2).map_err(db)?,
                title: r.get(3).map_err(db)?,
                text: r.get(4).map_err(db)?,
                reporter: r.get(5).map_err(db)?,
                place: r.get(6).map_err(db)?,
                town: r.get(7).map_err(db)?,
                request_type: r.get(8).map_err(db)?,
                domain: r.get(9).map_err(db)?,
                category: r.get(10).map_err(db)?,
                suggested_unit: r.get(11).map_err(db)?,
                confidence: r.get::<_, Option<f64>>(12).map_err(db)?.map(|c| c as f32),
                needs_review: r.get::<_, i64>(13).map_err(db)? != 0,
                escalate: r.get::<_, i64>(14).map_err(db)? != 0,
                predictions: json(predictions)?,
                kb_versions: json(kb_versions)?,
                models: json(models)?,
                embedding: embedding.map(|b| vector_from_bytes(&b)),
            },
            decision: decision.map(|d| serde_json::from_str(&d)).transpose().map_err(json_err)?,
            review: review.map(|d| serde_json::from_str(&d)).transpose().map_err(json_err)?,
        })
    };
    Ok(build())
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Database(e.to_string()))
}

impl TicketStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn schema_version(&self) -> Result<i64> {
        self.lock().query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0)).map_err(db)
    }

    fn insert(&self, t: &NewTicket) -> Result<TicketId> {
        Ok(self.insert_many(std::slice::from_ref(t))?[0])
    }

    fn insert_many(&self, tickets: &[NewTicket]) -> Result<Vec<TicketId>> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(db)?;
        let mut ids = Vec::with_capacity(tickets.len());
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO tickets (key_id, received_at_ms, title, text, reporter, place, town, request_type, domain, category,
                        suggested_unit, confidence, needs_review, escalate, predictions, kb_versions, models, embedding)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
                )
                .map_err(db)?;
            for t in tickets {
                stmt.execute(params![
                    t.key_id,
                    t.received_at_ms,
                    mask_opt(&t.title),
                    mask(&t.text),
                    t.reporter,
                    t.place,
                    t.town,
                    t.request_type,
                    t.domain,
                    t.category,
                    t.suggested_unit,
                    t.confidence.map(|c| c as f64),
                    t.needs_review as i64,
                    t.escalate as i64,
                    to_json(&t.predictions)?,
                    to_json(&t.kb_versions)?,
                    to_json(&t.models)?,
                    t.embedding.as_deref().map(vector_to_bytes),
                ])
                .map_err(db)?;
                ids.push(tx.last_insert_rowid());
            }
        }
        tx.commit().map_err(db)?;
        Ok(ids)
    }

    fn get(&self, id: TicketId) -> Result<Option<TicketRecord>> {
        Ok(self.query(&format!("SELECT {COLUMNS} FROM tickets WHERE id = ?1"), &[&id])?.pop())
    }

    fn list(&self, q: &TicketQuery) -> Result<Vec<TicketRecord>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM tickets
             WHERE (?1 IS NULL OR key_id = ?1) AND (?2 IS NULL OR received_at_ms >= ?2)
               AND (?3 IS NULL OR received_at_ms < ?3) AND (?4 IS NULL OR id < ?4)
             ORDER BY id DESC LIMIT ?5"
        );
        self.query(&sql, &[&q.key_id, &q.since_ms, &q.until_ms, &q.before_id, &(q.limit as i64)])
    }

    fn count(&self) -> Result<u64> {
        self.lock().query_row("SELECT COUNT(*) FROM tickets", [], |r| r.get::<_, i64>(0)).map(|n| n as u64).map_err(db)
    }

    fn decide(&self, id: TicketId, d: &Decision) -> Result<bool> {
        let mut d = d.clone();
        d.reply = mask_opt(&d.reply);
        let corrected = d.verdict != Verdict::Accepted;
        let n = self
            .lock()
            .execute(
                "UPDATE tickets SET decision = ?2, decision_verdict = ?3, corrected = ?4 WHERE id = ?1",
                params![id, to_json(&d)?, d.verdict.as_str(), corrected as i64],
            )
            .map_err(db)?;
        Ok(n > 0)
    }

    fn delete(&self, id: TicketId) -> Result<bool> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(db)?;
        tx.execute("DELETE FROM feedback WHERE ticket_id = ?1", [id]).map_err(db)?;
        let n = tx.execute("DELETE FROM tickets WHERE id = ?1", [id]).map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(n > 0)
    }

    fn purge_before(&self, before_ms: i64) -> Result<u64> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(db)?;
        tx.execute("DELETE FROM feedback WHERE ticket_id IN (SELECT id FROM tickets WHERE received_at_ms < ?1)", [before_ms]).map_err(db)?;
        let n = tx.execute("DELETE FROM tickets WHERE received_at_ms < ?1", [before_ms]).map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(n as u64)
    }

    fn prior_candidates(&self, reporter: Option<&str>, town: Option<&str>, since_ms: i64, limit: usize) -> Result<Vec<TicketRecord>> {
        if reporter.is_none() && town.is_none() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM tickets WHERE received_at_ms >= ?3 AND ((?1 IS NOT NULL AND reporter = ?1) OR (?2 IS NOT NULL AND town = ?2))
             ORDER BY received_at_ms DESC, id DESC LIMIT ?4"
        );
        self.query(&sql, &[&reporter, &town, &since_ms, &(limit as i64)])
    }

    fn review_queue(&self, limit: usize) -> Result<Vec<TicketRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM tickets WHERE reviewed_at_ms IS NULL AND (needs_review = 1 OR corrected = 1) ORDER BY id LIMIT ?1");
        self.query(&sql, &[&(limit as i64)])
    }

    fn review(&self, id: TicketId, r: &Review) -> Result<bool> {
        let n = self
            .lock()
            .execute("UPDATE tickets SET review = ?2, reviewed_at_ms = ?3 WHERE id = ?1", params![id, to_json(r)?, r.at_ms])
            .map_err(db)?;
        Ok(n > 0)
    }

    fn reviewed(&self) -> Result<Vec<TicketRecord>> {
        self.query(&format!("SELECT {COLUMNS} FROM tickets WHERE reviewed_at_ms IS NOT NULL ORDER BY id"), &[])
    }

    fn add_feedback(&self, f: &FeedbackEntry) -> Result<bool> {
        let n = self
            .lock()
            .execute(
                "INSERT INTO feedback (id, at_ms, key_id, ticket_id, target, verdict, input, suggestion, edited, comment, citations)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (id) DO NOTHING",
                params![
                    f.id,
                    f.at_ms,
                    f.key_id,
                    f.ticket_id,
                    f.target,
                    f.verdict,
                    mask(&f.input),
                    mask(&f.suggestion),
                    mask_opt(&f.edited),
                    mask_opt(&f.comment),
                    to_json(&f.citations)?,
                ],
            )
            .map_err(db)?;
        Ok(n > 0)
    }

    fn feedback(&self) -> Result<Vec<FeedbackEntry>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT id, at_ms, key_id, ticket_id, target, verdict, input, suggestion, edited, comment, citations FROM feedback ORDER BY at_ms, id")
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    FeedbackEntry {
                        id: r.get(0)?,
                        at_ms: r.get(1)?,
                        key_id: r.get(2)?,
                        ticket_id: r.get(3)?,
                        target: r.get(4)?,
                        verdict: r.get(5)?,
                        input: r.get(6)?,
                        suggestion: r.get(7)?,
                        edited: r.get(8)?,
                        comment: r.get(9)?,
                        citations: Vec::new(),
                    },
                    r.get::<_, String>(10)?,
                ))
            })
            .map_err(db)?;
        rows.map(|r| {
            let (mut f, cites) = r.map_err(db)?;
            f.citations = serde_json::from_str(&cites).map_err(json_err)?;
            Ok(f)
        })
        .collect()
    }

    fn conversation(&self, owner: &str, id: &str) -> Result<Vec<ConversationTurn>> {
        conversation::check_key(owner, id)?;
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT role, content FROM conversation_turns WHERE owner = ?1 AND conversation_id = ?2 ORDER BY seq")
            .map_err(db)?;
        let rows = stmt.query_map(params![owner, id], |r| Ok(ConversationTurn { role: r.get(0)?, content: r.get(1)? })).map_err(db)?;
        rows.map(|r| r.map_err(db)).collect()
    }

    fn append_conversation(&self, owner: &str, id: &str, turns: &[ConversationTurn], max_turns: usize, now_ms: i64) -> Result<()> {
        conversation::check_append(owner, id, turns, max_turns)?;
        if turns.is_empty() {
            return Ok(());
        }
        let turns = conversation::masked(turns);
        let n = turns.len() as i64;
        let mut conn = self.lock();
        // IMMEDIATE: the write lock is taken before anything is read, so another process's
        // append waits (busy timeout) instead of both reserving the same turn numbers.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(db)?;
        let end: i64 = tx
            .query_row(
                "INSERT INTO conversations (owner, id, updated_at_ms, next_seq) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (owner, id) DO UPDATE SET updated_at_ms = MAX(updated_at_ms, excluded.updated_at_ms), next_seq = next_seq + excluded.next_seq
                 RETURNING next_seq",
                params![owner, id, now_ms, n],
                |r| r.get(0),
            )
            .map_err(db)?;
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO conversation_turns (owner, conversation_id, seq, role, content) VALUES (?1, ?2, ?3, ?4, ?5)")
                .map_err(db)?;
            for (i, t) in turns.iter().enumerate() {
                insert.execute(params![owner, id, end - n + i as i64, t.role, t.content]).map_err(db)?;
            }
        }
        tx.execute(
            "DELETE FROM conversation_turns WHERE owner = ?1 AND conversation_id = ?2 AND seq < ?3",
            params![owner, id, end - max_turns.min(i64::MAX as usize) as i64],
        )
        .map_err(db)?;
        tx.commit().map_err(db)
    }

    fn purge_conversations_before(&self, before_ms: i64) -> Result<u64> {
        // The turns go with their conversation (ON DELETE CASCADE; the store turns foreign keys on).
        let n = self.lock().execute("DELETE FROM conversations WHERE updated_at_ms < ?1", [before_ms]).map_err(db)?;
        Ok(n as u64)
    }

    fn trim_conversations(&self, keep: usize) -> Result<u64> {
        let n = self
            .lock()
            .execute(
                "DELETE FROM conversations WHERE (owner, id) NOT IN
                   (SELECT owner, id FROM conversations ORDER BY updated_at_ms DESC, owner, id LIMIT ?1)",
                [keep.min(i64::MAX as usize) as i64],
            )
            .map_err(db)?;
        Ok(n as u64)
    }

    fn scan(&self, each: &mut dyn FnMut(TicketRecord) -> Result<()>) -> Result<u64> {
        // Pages by id so the lock is not held across the caller's work.
        let (mut after, mut n) = (0i64, 0u64);
        loop {
            let page = self.query(&format!("SELECT {COLUMNS} FROM tickets WHERE id > ?1 ORDER BY id LIMIT 2000"), &[&after])?;
            let Some(last) = page.last() else { return Ok(n) };
            after = last.id;
            for t in page {
                n += 1;
                each(t)?;
            }
        }
    }
}
