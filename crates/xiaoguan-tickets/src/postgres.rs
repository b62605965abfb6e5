//! PostgreSQL, for several service replicas sharing one store: the same tables, columns and
//! semantics as the SQLite backend (`sqlite.rs`), its own migration list, a small connection pool.
//!
//! The client is the synchronous `postgres` crate, which drives each connection on a private
//! tokio runtime: **never call a `PostgresStore` from inside an async tokio context** (it panics
//! with "Cannot start a runtime from within a runtime"). The server calls the store from
//! `tokio::task::spawn_blocking`, which is fine; so is any plain thread.
//!
//! Connections are made without TLS (`NoTls`): a URL with `sslmode=require` is refused at connect.

use crate::conversation::{self, ConversationTurn};
use crate::record::*;
use crate::{redact_url, Result, StoreError, TicketStore};
use ::postgres::types::ToSql;
use ::postgres::{Client, Config, NoTls, Row, Statement};
use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The migrations, in order; `MIGRATIONS[i]` takes the schema from version i to i + 1. Same
/// versions and meaning as `sqlite::MIGRATIONS`, in PostgreSQL's types.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: tickets with predictions and the agent's decision; the feedback log.
    "CREATE TABLE tickets (
        id BIGSERIAL PRIMARY KEY,
        key_id TEXT NOT NULL,
        received_at_ms BIGINT NOT NULL,
        title TEXT,
        text TEXT NOT NULL,
        reporter TEXT,
        place TEXT,
        town TEXT,
        request_type TEXT,
        domain TEXT,
        category TEXT,
        suggested_unit TEXT,
        confidence DOUBLE PRECISION,
        needs_review BOOLEAN NOT NULL DEFAULT FALSE,
        escalate BOOLEAN NOT NULL DEFAULT FALSE,
        predictions TEXT NOT NULL,
        kb_versions TEXT NOT NULL,
        models TEXT NOT NULL,
        embedding BYTEA,
        decision TEXT,
        decision_verdict TEXT
     );
     CREATE INDEX tickets_received ON tickets(received_at_ms);
     CREATE INDEX tickets_key ON tickets(key_id, id);
     CREATE TABLE feedback (
        id TEXT PRIMARY KEY,
        at_ms BIGINT NOT NULL,
        key_id TEXT NOT NULL,
        ticket_id BIGINT,
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
    // The queue index is partial: it holds exactly the rows `review_queue` reads, in id order.
    "ALTER TABLE tickets ADD COLUMN corrected BOOLEAN NOT NULL DEFAULT FALSE;
     ALTER TABLE tickets ADD COLUMN review TEXT;
     ALTER TABLE tickets ADD COLUMN reviewed_at_ms BIGINT;
     UPDATE tickets SET corrected = TRUE WHERE decision_verdict IN ('edited', 'rejected');
     CREATE INDEX tickets_reporter ON tickets(reporter, received_at_ms);
     CREATE INDEX tickets_town ON tickets(town, received_at_ms);
     CREATE INDEX tickets_queue ON tickets(id) WHERE reviewed_at_ms IS NULL AND (needs_review OR corrected);
     CREATE INDEX feedback_ticket ON feedback(ticket_id);",
    // 3: the answer API's conversations, shared by replicas. `next_seq` numbers the turns: an
    // append reserves its range by bumping it in an upsert, which also holds the conversation's
    // row lock until the append commits, so appends from two replicas queue up, never interleave.
    "CREATE TABLE conversations (
        owner TEXT NOT NULL,
        id TEXT NOT NULL,
        updated_at_ms BIGINT NOT NULL,
        next_seq BIGINT NOT NULL,
        PRIMARY KEY (owner, id)
     );
     CREATE INDEX conversations_updated ON conversations(updated_at_ms);
     CREATE TABLE conversation_turns (
        owner TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        PRIMARY KEY (owner, conversation_id, seq),
        FOREIGN KEY (owner, conversation_id) REFERENCES conversations(owner, id) ON DELETE CASCADE
     );",
];

const COLUMNS: &str = "id, key_id, received_at_ms, title, text, reporter, place, town, request_type, domain, category, \
    suggested_unit, confidence, needs_review, escalate, predictions, kb_versions, models, embedding, decision, review";

/// The key of the transaction-scoped advisory lock migrations run under (any fixed number; it
/// only has to be the same for every replica). Advisory locks are per database.
const MIGRATION_LOCK: i64 = 0x7869_616f_6775_616e; // "xiaoguan"

/// At most this many connections per store (replica).
const POOL_MAX: usize = 8;
/// Connecting gives up after this long, unless the URL sets `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A caller waits at most this long for a free connection when all `POOL_MAX` are busy.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(30);
/// An idle connection older than this is checked (one round trip) before it is used again.
const CHECK_IDLE_AFTER: Duration = Duration::from_secs(30);

/// The PostgreSQL ticket store. Every method is one transaction on one pooled connection; a
/// connection that broke (server restart, network) is dropped, and the next call opens a new one.
///
/// Synchronous: call it from plain threads or `spawn_blocking`, never from async code (see the
/// module documentation).
pub struct PostgresStore {
    pool: Pool,
}

struct Conn {
    client: Client,
    /// Prepared statements of this connection, by SQL text (a fixed set: the store's queries).
    statements: HashMap<String, Statement>,
    idle_since: Instant,
}

impl Conn {
    fn prepare(&mut self, sql: &str) -> std::result::Result<Statement, ::postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }
}

struct PoolState {
    idle: Vec<Conn>,
    /// Connections in existence (idle or leased).
    open: usize,
}

struct Pool {
    config: Config,
    /// The URL without its password.
    location: String,
    max: usize,
    state: Mutex<PoolState>,
    freed: Condvar,
}

/// A connection out of the pool; back into it on drop, unless it broke.
struct Lease<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
    broken: bool,
}

impl Lease<'_> {
    fn conn(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("a lease holds its connection until dropped")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let conn = self.conn.take();
        let mut st = self.pool.lock();
        match conn {
            Some(mut c) if !self.broken && !c.client.is_closed() => {
                c.idle_since = Instant::now();
                st.idle.push(c);
            }
            _ => st.open -= 1,
        }
        drop(st);
        self.pool.freed.notify_one();
    }
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn connect(&self) -> Result<Conn> {
        let client = self
            .config
            .connect(NoTls)
            .map_err(|e| StoreError::Database(format!("cannot connect to the ticket database {}: {e}", self.location)))?;
        Ok(Conn { client, statements: HashMap::new(), idle_since: Instant::now() })
    }

    fn get(&self) -> Result<Lease<'_>> {
        let deadline = Instant::now() + CHECKOUT_TIMEOUT;
        let mut st = self.lock();
        loop {
            if let Some(mut c) = st.idle.pop() {
                drop(st);
                let stale = c.client.is_closed() || (c.idle_since.elapsed() > CHECK_IDLE_AFTER && c.client.is_valid(Duration::from_secs(2)).is_err());
                if !stale {
                    return Ok(Lease { pool: self, conn: Some(c), broken: false });
                }
                // Dropped; open a fresh one in its place (the slot stays counted).
                drop(c);
                return match self.connect() {
                    Ok(c) => Ok(Lease { pool: self, conn: Some(c), broken: false }),
                    Err(e) => {
                        self.release_slot();
                        Err(e)
                    }
                };
            }
            if st.open < self.max {
                st.open += 1;
                drop(st);
                return match self.connect() {
                    Ok(c) => Ok(Lease { pool: self, conn: Some(c), broken: false }),
                    Err(e) => {
                        self.release_slot();
                        Err(e)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(StoreError::Database(format!(
                    "all {} connections to {} stayed busy for {} s",
                    self.max,
                    self.location,
                    CHECKOUT_TIMEOUT.as_secs()
                )));
            }
            st = self.freed.wait_timeout(st, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    fn release_slot(&self) {
        self.lock().open -= 1;
        self.freed.notify_one();
    }
}

/// Whether an error means the connection is gone or not worth trusting. A statement's error
/// (a constraint, bad SQL) leaves the session usable; I/O errors, a closed connection, a protocol
/// surprise, and the server's FATAL "terminating connection" (57P01..03: shutdown, an
/// administrator's kill; class 08: connection exception) do not.
fn session_lost(e: &::postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.as_db_error() {
        None => true,
        Some(d) => matches!(d.severity(), "FATAL" | "PANIC") || d.code().code().starts_with("57P") || d.code().code().starts_with("08"),
    }
}

fn db(e: ::postgres::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

fn json_err(e: serde_json::Error) -> StoreError {
    StoreError::Database(format!("a stored JSON column does not parse: {e}"))
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Database(e.to_string()))
}

/// A `usize` limit as SQL's BIGINT (PostgreSQL refuses a negative LIMIT; `usize::MAX` means all).
fn limit(n: usize) -> i64 {
    n.min(i64::MAX as usize) as i64
}

type Params<'a> = [&'a (dyn ToSql + Sync)];

impl PostgresStore {
    /// Connect and migrate to the newest schema.
    pub fn connect(url: &str) -> Result<Self> {
        Self::connect_at_version(url, MIGRATIONS.len())
    }

    /// Connect and migrate only up to `version` (tests of upgrading from an older schema).
    pub fn connect_at_version(url: &str, version: usize) -> Result<Self> {
        let location = redact_url(url);
        let mut config: Config = url
            .parse()
            .map_err(|e| StoreError::InvalidInput(format!("the ticket database url {location} does not parse: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("xiaoguan");
        }
        let store = Self {
            pool: Pool { config, location, max: POOL_MAX, state: Mutex::new(PoolState { idle: Vec::new(), open: 0 }), freed: Condvar::new() },
        };
        store.migrate(version)?;
        Ok(store)
    }

    fn migrate(&self, target: usize) -> Result<()> {
        let location = self.pool.location.clone();
        let mut outcome: Result<()> = Ok(());
        self.with(|c| {
            let mut tx = c.client.transaction()?;
            // Two replicas starting at once: the second waits here until the first committed,
            // then finds the schema current. The lock ends with the transaction.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
            tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at_ms BIGINT NOT NULL)")?;
            let current: i64 = tx.query_one("SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations", &[])?.get(0);
            if current as usize > MIGRATIONS.len() {
                outcome = Err(StoreError::Database(format!(
                    "{location} has schema version {current}, newer than this binary knows ({}): upgrade xiaoguan",
                    MIGRATIONS.len()
                )));
                return Ok(()); // rolled back on drop
            }
            for (i, sql) in MIGRATIONS.iter().enumerate().take(target).skip(current as usize) {
                if let Err(e) = tx.batch_execute(sql) {
                    outcome = Err(StoreError::Database(format!("migration {} failed on {location}: {e}", i + 1)));
                    return Ok(());
                }
                tx.execute("INSERT INTO schema_migrations (version, applied_at_ms) VALUES ($1, $2)", &[&(i as i64 + 1), &now_ms()])?;
            }
            tx.commit()
        })?;
        outcome
    }

    /// Run `f` on a pooled connection; a connection the error left unusable is not pooled again.
    fn with<T>(&self, f: impl FnOnce(&mut Conn) -> std::result::Result<T, ::postgres::Error>) -> Result<T> {
        let mut lease = self.pool.get()?;
        match f(lease.conn()) {
            Ok(v) => Ok(v),
            Err(e) => {
                lease.broken = session_lost(&e) || lease.conn().client.is_closed();
                Err(db(e))
            }
        }
    }

    fn rows(&self, sql: &str, args: &Params<'_>) -> Result<Vec<Row>> {
        self.with(|c| {
            let s = c.prepare(sql)?;
            c.client.query(&s, args)
        })
    }

    fn execute(&self, sql: &str, args: &Params<'_>) -> Result<u64> {
        self.with(|c| {
            let s = c.prepare(sql)?;
            c.client.execute(&s, args)
        })
    }

    fn query(&self, sql: &str, args: &Params<'_>) -> Result<Vec<TicketRecord>> {
        self.rows(sql, args)?.iter().map(read_row).collect()
    }
}

const INSERT_TICKET: &str = "INSERT INTO tickets (key_id, received_at_ms, title, text, reporter, place, town, request_type, domain, category,
        suggested_unit, confidence, needs_review, escalate, predictions, kb_versions, models, embedding)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) RETURNING id";

/// A ticket as it is written: text fields masked, JSON serialized, the embedding as bytes.
struct InsertRow<'a> {
    t: &'a NewTicket,
    title: Option<String>,
    text: String,
    confidence: Option<f64>,
    predictions: String,
    kb_versions: String,
    models: String,
    embedding: Option<Vec<u8>>,
}

impl<'a> InsertRow<'a> {
    fn new(t: &'a NewTicket) -> Result<Self> {
        Ok(Self {
            t,
            title: mask_opt(&t.title),
            text: mask(&t.text),
            confidence: t.confidence.map(|c| c as f64),
            predictions: to_json(&t.predictions)?,
            kb_versions: to_json(&t.kb_versions)?,
            models: to_json(&t.models)?,
            embedding: t.embedding.as_deref().map(vector_to_bytes),
        })
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 18] {
        let t = self.t;
        [
            &t.key_id,
            &t.received_at_ms,
            &self.title,
            &self.text,
            &t.reporter,
            &t.place,
            &t.town,
            &t.request_type,
            &t.domain,
            &t.category,
            &t.suggested_unit,
            &self.confidence,
            &t.needs_review,
            &t.escalate,
            &self.predictions,
            &self.kb_versions,
            &self.models,
            &self.embedding,
        ]
    }
}

fn read_row(r: &Row) -> Result<TicketRecord> {
    let json = |s: String| serde_json::from_str::<serde_json::Value>(&s).map_err(json_err);
    let embedding: Option<Vec<u8>> = r.try_get(18).map_err(db)?;
    let decision: Option<String> = r.try_get(19).map_err(db)?;
    let review: Option<String> = r.try_get(20).map_err(db)?;
    Ok(TicketRecord {
        id: r.try_get(0).map_err(db)?,
        ticket: NewTicket {
            key_id: r.try_get(1).map_err(db)?,
            received_at_ms: r.try_get(2).map_err(db)?,
            title: r.try_get(3).map_err(db)?,
            text: r.try_get(4).map_err(db)?,
            reporter: r.try_get(5).map_err(db)?,
            place: r.try_get(6).map_err(db)?,
            town: r.try_get(7).map_err(db)?,
            request_type: r.try_get(8).map_err(db)?,
            domain: r.try_get(9).map_err(db)?,
            category: r.try_get(10).map_err(db)?,
            suggested_unit: r.try_get(11).map_err(db)?,
            confidence: r.try_get::<_, Option<f64>>(12).map_err(db)?.map(|c| c as f32),
            needs_review: r.try_get(13).map_err(db)?,
            escalate: r.try_get(14).map_err(db)?,
            predictions: json(r.try_get(15).map_err(db)?)?,
            kb_versions: json(r.try_get(16).map_err(db)?)?,
            models: json(r.try_get(17).map_err(db)?)?,
            embedding: embedding.map(|b| vector_from_bytes(&b)),
        },
        decision: decision.map(|d| serde_json::from_str(&d)).transpose().map_err(json_err)?,
        review: review.map(|d| serde_json::from_str(&d)).transpose().map_err(json_err)?,
    })
}

impl TicketStore for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn location(&self) -> String {
        self.pool.location.clone()
    }

    fn schema_version(&self) -> Result<i64> {
        let rows = self.rows("SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations", &[])?;
        rows.first().map(|r| r.try_get(0).map_err(db)).unwrap_or(Ok(0))
    }

    fn insert(&self, t: &NewTicket) -> Result<TicketId> {
        Ok(self.insert_many(std::slice::from_ref(t))?[0])
    }

    fn insert_many(&self, tickets: &[NewTicket]) -> Result<Vec<TicketId>> {
        if tickets.is_empty() {
            return Ok(Vec::new());
        }
        // Masked and serialized before a connection is taken.
        let rows = tickets.iter().map(|t| InsertRow::new(t)).collect::<Result<Vec<_>>>()?;
        self.with(|c| {
            let stmt = c.prepare(INSERT_TICKET)?;
            if let [row] = rows.as_slice() {
                // One statement is its own transaction.
                return Ok(vec![c.client.query_one(&stmt, &row.params())?.try_get(0)?]);
            }
            let mut tx = c.client.transaction()?;
            let mut ids = Vec::with_capacity(rows.len());
            for row in &rows {
                ids.push(tx.query_one(&stmt, &row.params())?.try_get(0)?);
            }
            tx.commit()?;
            Ok(ids)
        })
    }

    fn get(&self, id: TicketId) -> Result<Option<TicketRecord>> {
        Ok(self.query(&format!("SELECT {COLUMNS} FROM tickets WHERE id = $1"), &[&id])?.pop())
    }

    fn list(&self, q: &TicketQuery) -> Result<Vec<TicketRecord>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM tickets
             WHERE ($1::TEXT IS NULL OR key_id = $1) AND ($2::BIGINT IS NULL OR received_at_ms >= $2)
               AND ($3::BIGINT IS NULL OR received_at_ms < $3) AND ($4::BIGINT IS NULL OR id < $4)
             ORDER BY id DESC LIMIT $5"
        );
        self.query(&sql, &[&q.key_id, &q.since_ms, &q.until_ms, &q.before_id, &limit(q.limit)])
    }

    fn count(&self) -> Result<u64> {
        let rows = self.rows("SELECT COUNT(*) FROM tickets", &[])?;
        let n: i64 = rows.first().map(|r| r.try_get(0).map_err(db)).unwrap_or(Ok(0))?;
        Ok(n as u64)
    }

    fn decide(&self, id: TicketId, d: &Decision) -> Result<bool> {
        let mut d = d.clone();
        d.reply = mask_opt(&d.reply);
        let corrected = d.verdict != Verdict::Accepted;
        let n = self.execute(
            "UPDATE tickets SET decision = $2, decision_verdict = $3, corrected = $4 WHERE id = $1",
            &[&id, &to_json(&d)?, &d.verdict.as_str(), &corrected],
        )?;
        Ok(n > 0)
    }

    fn delete(&self, id: TicketId) -> Result<bool> {
        let n = self.with(|c| {
            let (del_feedback, del_ticket) = (c.prepare("DELETE FROM feedback WHERE ticket_id = $1")?, c.prepare("DELETE FROM tickets WHERE id = $1")?);
            let mut tx = c.client.transaction()?;
            tx.execute(&del_feedback, &[&id])?;
            let n = tx.execute(&del_ticket, &[&id])?;
            tx.commit()?;
            Ok(n)
        })?;
        Ok(n > 0)
    }

    fn purge_before(&self, before_ms: i64) -> Result<u64> {
        self.with(|c| {
            let del_feedback = c.prepare("DELETE FROM feedback WHERE ticket_id IN (SELECT id FROM tickets WHERE received_at_ms < $1)")?;
            let del_tickets = c.prepare("DELETE FROM tickets WHERE received_at_ms < $1")?;
            let mut tx = c.client.transaction()?;
            tx.execute(&del_feedback, &[&before_ms])?;
            let n = tx.execute(&del_tickets, &[&before_ms])?;
            tx.commit()?;
            Ok(n)
        })
    }

    fn prior_candidates(&self, reporter: Option<&str>, town: Option<&str>, since_ms: i64, limit_n: usize) -> Result<Vec<TicketRecord>> {
        if reporter.is_none() && town.is_none() {
            return Ok(Vec::new());
        }
        // `id DESC` breaks ties in received time, so the answer is the same on every call.
        let sql = format!(
            "SELECT {COLUMNS} FROM tickets WHERE received_at_ms >= $3
               AND (($1::TEXT IS NOT NULL AND reporter = $1) OR ($2::TEXT IS NOT NULL AND town = $2))
             ORDER BY received_at_ms DESC, id DESC LIMIT $4"
        );
        self.query(&sql, &[&reporter, &town, &since_ms, &limit(limit_n)])
    }

    fn review_queue(&self, limit_n: usize) -> Result<Vec<TicketRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM tickets WHERE reviewed_at_ms IS NULL AND (needs_review OR corrected) ORDER BY id LIMIT $1");
        self.query(&sql, &[&limit(limit_n)])
    }

    fn review(&self, id: TicketId, r: &Review) -> Result<bool> {
        let n = self.execute("UPDATE tickets SET review = $2, reviewed_at_ms = $3 WHERE id = $1", &[&id, &to_json(r)?, &r.at_ms])?;
        Ok(n > 0)
    }

    fn reviewed(&self) -> Result<Vec<TicketRecord>> {
        self.query(&format!("SELECT {COLUMNS} FROM tickets WHERE reviewed_at_ms IS NOT NULL ORDER BY id"), &[])
    }

    fn add_feedback(&self, f: &FeedbackEntry) -> Result<bool> {
        let n = self.execute(
            "INSERT INTO feedback (id, at_ms, key_id, ticket_id, target, verdict, input, suggestion, edited, comment, citations)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING",
            &[
                &f.id,
                &f.at_ms,
                &f.key_id,
                &f.ticket_id,
                &f.target,
                &f.verdict,
                &mask(&f.input),
                &mask(&f.suggestion),
                &mask_opt(&f.edited),
                &mask_opt(&f.comment),
                &to_json(&f.citations)?,
            ],
        )?;
        Ok(n > 0)
    }

    fn feedback(&self) -> Result<Vec<FeedbackEntry>> {
        // COLLATE "C": ids compare bytewise, as SQLite does, whatever the database's locale.
        let rows = self.rows(
            "SELECT id, at_ms, key_id, ticket_id, target, verdict, input, suggestion, edited, comment, citations
             FROM feedback ORDER BY at_ms, id COLLATE \"C\"",
            &[],
        )?;
        rows.iter()
            .map(|r| {
                let cites: String = r.try_get(10).map_err(db)?;
                Ok(FeedbackEntry {
                    id: r.try_get(0).map_err(db)?,
                    at_ms: r.try_get(1).map_err(db)?,
                    key_id: r.try_get(2).map_err(db)?,
                    ticket_id: r.try_get(3).map_err(db)?,
                    target: r.try_get(4).map_err(db)?,
                    verdict: r.try_get(5).map_err(db)?,
                    input: r.try_get(6).map_err(db)?,
                    suggestion: r.try_get(7).map_err(db)?,
                    edited: r.try_get(8).map_err(db)?,
                    comment: r.try_get(9).map_err(db)?,
                    citations: serde_json::from_str(&cites).map_err(json_err)?,
                })
            })
            .collect()
    }

    fn conversation(&self, owner: &str, id: &str) -> Result<Vec<ConversationTurn>> {
        conversation::check_key(owner, id)?;
        let rows = self.rows("SELECT role, content FROM conversation_turns WHERE owner = $1 AND conversation_id = $2 ORDER BY seq", &[&owner, &id])?;
        rows.iter().map(|r| Ok(ConversationTurn { role: r.try_get(0).map_err(db)?, content: r.try_get(1).map_err(db)? })).collect()
    }

    fn append_conversation(&self, owner: &str, id: &str, turns: &[ConversationTurn], max_turns: usize, now_ms: i64) -> Result<()> {
        conversation::check_append(owner, id, turns, max_turns)?;
        if turns.is_empty() {
            return Ok(());
        }
        let turns = conversation::masked(turns);
        let n = turns.len() as i64;
        self.with(|c| {
            // The upsert takes the conversation's row lock (new row or existing), held to commit:
            // a concurrent append of the same conversation waits here, then reads our next_seq.
            let reserve = c.prepare(
                "INSERT INTO conversations (owner, id, updated_at_ms, next_seq) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (owner, id) DO UPDATE SET updated_at_ms = GREATEST(conversations.updated_at_ms, EXCLUDED.updated_at_ms),
                    next_seq = conversations.next_seq + EXCLUDED.next_seq
                 RETURNING next_seq",
            )?;
            let insert = c.prepare("INSERT INTO conversation_turns (owner, conversation_id, seq, role, content) VALUES ($1, $2, $3, $4, $5)")?;
            let trim = c.prepare("DELETE FROM conversation_turns WHERE owner = $1 AND conversation_id = $2 AND seq < $3")?;
            let mut tx = c.client.transaction()?;
            let end: i64 = tx.query_one(&reserve, &[&owner, &id, &now_ms, &n])?.try_get(0)?;
            for (i, t) in turns.iter().enumerate() {
                tx.execute(&insert, &[&owner, &id, &(end - n + i as i64), &t.role, &t.content])?;
            }
            tx.execute(&trim, &[&owner, &id, &(end - limit(max_turns))])?;
            tx.commit()
        })
    }

    fn purge_conversations_before(&self, before_ms: i64) -> Result<u64> {
        // The turns go with their conversation (ON DELETE CASCADE). A conversation appended to
        // meanwhile is re-checked after its row lock and kept (READ COMMITTED re-evaluates).
        self.execute("DELETE FROM conversations WHERE updated_at_ms < $1", &[&before_ms])
    }

    fn trim_conversations(&self, keep: usize) -> Result<u64> {
        // COLLATE "C": ties in time are broken bytewise, as SQLite does.
        self.execute(
            "DELETE FROM conversations WHERE (owner, id) NOT IN
               (SELECT owner, id FROM conversations ORDER BY updated_at_ms DESC, owner COLLATE \"C\", id COLLATE \"C\" LIMIT $1)",
            &[&limit(keep)],
        )
    }

    fn scan(&self, each: &mut dyn FnMut(TicketRecord) -> Result<()>) -> Result<u64> {
        // Pages by id, so no connection is held across the caller's work.
        let (mut after, mut n) = (0i64, 0u64);
        let sql = format!("SELECT {COLUMNS} FROM tickets WHERE id > $1 ORDER BY id LIMIT 2000");
        loop {
            let page = self.query(&sql, &[&after])?;
            let Some(last) = page.last() else { return Ok(n) };
            after = last.id;
            for t in page {
                n += 1;
                each(t)?;
            }
        }
    }
}
