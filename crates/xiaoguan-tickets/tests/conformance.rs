//! One suite of ticket-store tests, run against both backends: every case in `cases` becomes
//! `sqlite::<case>` (a file in a temp dir) and `postgres::<case>` (a fresh database on a real
//! PostgreSQL server this test process starts: see `support/pg.rs`). The PostgreSQL half fails,
//! saying what to install, when the server binaries are missing.

mod support;
/// The conversation cases (kept apart: this file is long enough).
#[path = "conformance/conversations.rs"]
mod conversation_cases;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use xiaoguan_tickets::postgres::PostgresStore;
use xiaoguan_tickets::sqlite::SqliteStore;
use xiaoguan_tickets::{StoreError, TicketStore};

/// One backend's database for one test.
pub trait Fixture: Sync {
    /// A store on this test's database, at the newest schema (a second call: a second instance
    /// on the same database, as a second replica or process would have).
    fn open(&self) -> Box<dyn TicketStore>;
    fn open_at(&self, version: usize) -> xiaoguan_tickets::Result<Box<dyn TicketStore>>;
    /// Raw SQL, behind the store's back (SQL both dialects accept).
    fn exec(&self, sql: &str);
    /// A one-number query (`SELECT COUNT(*) …`), behind the store's back.
    fn query_i64(&self, sql: &str) -> i64;
    /// From now on, inserting a ticket with this key fails in the database (a trigger or a
    /// CHECK constraint): to see a batch fail halfway.
    fn forbid_key(&self, key: &str);
    /// What `location()` must say.
    fn expected_location(&self) -> String;
    /// What `location()` and error messages must never contain.
    fn secret(&self) -> Option<&str>;
    /// A folder for the test's own files.
    fn scratch(&self) -> &Path;
}

pub struct SqliteFixture {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl SqliteFixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("db").join("tickets.db");
        Self { dir, path }
    }
}

impl Fixture for SqliteFixture {
    fn open(&self) -> Box<dyn TicketStore> {
        Box::new(SqliteStore::open(&self.path).expect("open the SQLite store"))
    }
    fn open_at(&self, version: usize) -> xiaoguan_tickets::Result<Box<dyn TicketStore>> {
        Ok(Box::new(SqliteStore::open_at_version(&self.path, version)?))
    }
    fn exec(&self, sql: &str) {
        let c = rusqlite::Connection::open(&self.path).expect("raw connection");
        c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        c.execute_batch(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    fn query_i64(&self, sql: &str) -> i64 {
        let c = rusqlite::Connection::open(&self.path).expect("raw connection");
        c.query_row(sql, [], |r| r.get(0)).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
    fn forbid_key(&self, key: &str) {
        self.exec(&format!(
            "CREATE TRIGGER forbid_{key} BEFORE INSERT ON tickets WHEN NEW.key_id = '{key}' BEGIN SELECT RAISE(ABORT, 'forbidden key'); END;"
        ));
    }
    fn expected_location(&self) -> String {
        self.path.display().to_string()
    }
    fn secret(&self) -> Option<&str> {
        None
    }
    fn scratch(&self) -> &Path {
        self.dir.path()
    }
}

pub struct PgFixture {
    url: String,
    scratch: tempfile::TempDir,
}

impl PgFixture {
    fn new(tag: &str) -> Self {
        Self { url: support::pg::fresh_database(tag), scratch: tempfile::tempdir().expect("temp dir") }
    }
    fn raw(&self) -> ::postgres::Client {
        ::postgres::Client::connect(&self.url, ::postgres::NoTls).expect("raw connection")
    }
}

impl Fixture for PgFixture {
    fn open(&self) -> Box<dyn TicketStore> {
        Box::new(PostgresStore::connect(&self.url).expect("connect the PostgreSQL store"))
    }
    fn open_at(&self, version: usize) -> xiaoguan_tickets::Result<Box<dyn TicketStore>> {
        Ok(Box::new(PostgresStore::connect_at_version(&self.url, version)?))
    }
    fn exec(&self, sql: &str) {
        self.raw().batch_execute(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    fn query_i64(&self, sql: &str) -> i64 {
        let row = self.raw().query_one(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {e}"));
        row.try_get::<_, i64>(0).or_else(|_| row.try_get::<_, i32>(0).map(i64::from)).expect("an integer")
    }
    fn forbid_key(&self, key: &str) {
        self.exec(&format!("ALTER TABLE tickets ADD CONSTRAINT forbid_{key} CHECK (key_id <> '{key}')"));
    }
    fn expected_location(&self) -> String {
        self.url.replace(":not-a-secret@", ":***@")
    }
    fn secret(&self) -> Option<&str> {
        Some("not-a-secret")
    }
    fn scratch(&self) -> &Path {
        self.scratch.path()
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $case() { super::cases::$case(&super::SqliteFixture::new()); } )*
        }
        mod postgres {
            $( #[test] fn $case() { super::cases::$case(&super::PgFixture::new(stringify!($case))); } )*
        }
    };
}

conformance!(
    backend_and_location,
    insert_get_round_trip,
    insert_many_in_order_all_or_none,
    masking_never_stores_raw_numbers,
    list_filters_and_pages,
    count_follows_inserts_and_deletes,
    decide_latest_wins_and_sets_corrected,
    review_queue_contents_and_order,
    review_leaves_queue_and_lists_reviewed,
    delete_removes_ticket_and_its_feedback,
    purge_before_removes_old_tickets_and_their_feedback,
    prior_candidates_by_reporter_and_town,
    add_feedback_is_idempotent_and_ordered,
    scan_pages_over_many_rows,
    import_feedback_log_twice_skips_torn_line,
    migrate_v1_to_v2_keeps_rows_and_flags_corrected,
    newer_schema_is_refused,
    concurrent_first_open_migrates_once,
    concurrent_writers_one_store,
    concurrent_writers_two_stores,
    migrate_v2_to_v3_keeps_tickets_and_adds_conversations,
    conversation_round_trip_masked_and_in_order,
    conversation_keeps_newest_max_turns,
    conversation_is_only_visible_to_its_owner,
    purge_conversations_before_removes_stale_ones,
    trim_conversations_keeps_most_recent,
    concurrent_appends_from_two_stores_lose_no_turns,
    conversation_bad_input_is_refused,
);

mod cases {
    pub use super::conversation_cases::*;
    use super::Fixture;
    use serde_json::json;
    use std::collections::HashSet;
    use std::sync::{Arc, Barrier};
    use xiaoguan_tickets::import::{import_feedback_log, ImportReport};
    use xiaoguan_tickets::*;

    /// The newest schema version.
    const LATEST: i64 = 3;
    const PHONE: &str = "13800138000";
    /// An 18-digit ID-card number (441900: Dongguan), last digit X.
    const ID_NO: &str = "44190019900101123X";

    fn m(s: &str) -> String {
        xiaoguan_text::mask_pii(s).text
    }

    fn ticket(key: &str, at: i64, text: &str) -> NewTicket {
        NewTicket {
            key_id: key.into(),
            received_at_ms: at,
            text: text.into(),
            predictions: json!({}),
            kb_versions: json!({}),
            models: json!({}),
            ..Default::default()
        }
    }

    fn full_ticket() -> NewTicket {
        NewTicket {
            key_id: "agent-1".into(),
            received_at_ms: 1_700_000_000_123,
            title: Some("鸿福路工地夜间噪音".into()),
            text: "南城街道鸿福路工地夜间施工，噪音很大，影响休息。".into(),
            reporter: reporter_key(PHONE, "salt"),
            place: Some("南城街道·鸿福路".into()),
            town: Some("南城街道".into()),
            request_type: Some("投诉".into()),
            domain: Some("城市管理".into()),
            category: Some("噪音污染".into()),
            suggested_unit: Some("南城街道综合行政执法办".into()),
            confidence: Some(0.876_543_2),
            needs_review: true,
            escalate: true,
            predictions: json!({
                "unit": {"label": "南城街道综合行政执法办", "p": 0.8765},
                "reasons": ["夜间施工", "噪音"],
                "odd": [1, -2.5, null, true, "引号\"和\\反斜杠", {"深": {"层": []}}]
            }),
            kb_versions: json!({"policies": "2024-05-01", "units": 7}),
            models: json!({"embedder": "multilingual-e5-small", "generator": "qwen2-1.5b-int8"}),
            embedding: Some((0..384).map(|i| (i as f32 * 0.37).sin()).chain([-0.0, f32::MIN_POSITIVE, f32::MAX, 1e-45]).collect()),
        }
    }

    /// What the store must give back for `t`: its text fields masked.
    fn stored(t: &NewTicket) -> NewTicket {
        NewTicket { text: m(&t.text), title: t.title.as_deref().map(m), ..t.clone() }
    }

    fn decision(verdict: Verdict, at: i64) -> Decision {
        Decision {
            key_id: "agent-1".into(),
            at_ms: at,
            verdict,
            unit: Some("东城街道办".into()),
            request_type: Some("咨询".into()),
            domain: None,
            category: Some("其他".into()),
            reply: Some("您好，已转办。".into()),
            final_unit: None,
            closed: at % 2 == 0,
        }
    }

    fn review(who: &str, at: i64) -> Review {
        Review {
            reviewer: who.into(),
            at_ms: at,
            request_type: Some("投诉".into()),
            domain: Some("城市管理".into()),
            category: Some("噪音污染".into()),
            unit: Some("南城街道综合行政执法办".into()),
            note: Some("确认".into()),
        }
    }

    fn fb(id: &str, at: i64, ticket: Option<TicketId>) -> FeedbackEntry {
        FeedbackEntry {
            id: id.into(),
            at_ms: at,
            key_id: "agent-1".into(),
            ticket_id: ticket,
            target: "reply".into(),
            verdict: "edit".into(),
            input: format!("输入 {id}"),
            suggestion: "建议".into(),
            edited: Some("改后".into()),
            comment: None,
            citations: vec!["kb:policies#3".into(), "引用".into()],
        }
    }

    fn ids(v: &[TicketRecord]) -> Vec<TicketId> {
        v.iter().map(|t| t.id).collect()
    }

    fn q(limit: usize) -> TicketQuery {
        TicketQuery { limit, ..Default::default() }
    }

    pub fn backend_and_location(f: &dyn Fixture) {
        let s = f.open();
        assert_eq!(s.location(), f.expected_location());
        if let Some(secret) = f.secret() {
            assert!(!s.location().contains(secret), "{}", s.location());
            assert!(s.location().contains(":***@"), "{}", s.location());
            assert_eq!(s.backend(), "postgres");
        } else {
            assert_eq!(s.backend(), "sqlite");
        }
        assert_eq!(s.schema_version().unwrap(), LATEST);
    }

    pub fn insert_get_round_trip(f: &dyn Fixture) {
        let s = f.open();
        let t = full_ticket();
        let id = s.insert(&t).unwrap();
        let got = s.get(id).unwrap().expect("the ticket just stored");
        assert_eq!(got, TicketRecord { id, ticket: stored(&t), decision: None, review: None });
        assert_eq!(got.ticket.embedding.as_ref().unwrap().len(), 388);
        assert_eq!(got.ticket.confidence, Some(0.876_543_2f32));

        // Everything optional absent, JSON null, an empty (not absent) embedding.
        let bare = NewTicket { key_id: "k".into(), received_at_ms: -5, text: String::new(), embedding: Some(Vec::new()), ..Default::default() };
        let id2 = s.insert(&bare).unwrap();
        assert!(id2 > id, "ids grow: {id} then {id2}");
        assert_eq!(s.get(id2).unwrap().unwrap().ticket, bare);
        let none = NewTicket { embedding: None, ..bare.clone() };
        let id3 = s.insert(&none).unwrap();
        assert_eq!(s.get(id3).unwrap().unwrap().ticket.embedding, None);

        assert_eq!(s.get(id3 + 1000).unwrap(), None);
        assert_eq!(s.get(-1).unwrap(), None);
        // The same rows through a second instance.
        assert_eq!(f.open().get(id).unwrap().unwrap(), got);
    }

    pub fn insert_many_in_order_all_or_none(f: &dyn Fixture) {
        let s = f.open();
        assert!(s.insert_many(&[]).unwrap().is_empty());
        let batch: Vec<NewTicket> = (0..50)
            .map(|i| {
                let mut t = ticket("batch", i, &format!("批量{i} 电话{PHONE}"));
                t.embedding = Some(vec![i as f32, 0.5]);
                t.needs_review = i % 7 == 0;
                t
            })
            .collect();
        let ids = s.insert_many(&batch).unwrap();
        assert_eq!(ids.len(), batch.len());
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in order: {ids:?}");
        for (id, t) in ids.iter().zip(&batch) {
            let got = s.get(*id).unwrap().unwrap();
            assert_eq!(got.ticket, stored(t));
            assert_clean("a batch-inserted ticket", &got.ticket.text);
        }
        assert_eq!(s.review_queue(100).unwrap().len(), 8);

        // A batch that fails halfway stores nothing, and the store works on afterwards.
        f.forbid_key("bad");
        let mixed = [ticket("good", 1, "一"), ticket("good", 2, "二"), ticket("bad", 3, "三"), ticket("good", 4, "四")];
        let err = s.insert_many(&mixed).err().expect("the forbidden ticket fails the batch");
        assert!(matches!(err, StoreError::Database(_)), "{err:?}");
        assert_eq!(s.count().unwrap(), 50, "all or none");
        assert!(s.list(&TicketQuery { key_id: Some("good".into()), limit: 10, ..Default::default() }).unwrap().is_empty());
        assert!(s.insert(&ticket("bad", 5, "五")).is_err());
        let after = s.insert_many(&mixed[..2]).unwrap();
        assert!(after[0] > *ids.last().unwrap());
        assert_eq!(s.count().unwrap(), 52);
    }

    fn assert_clean(what: &str, s: &str) {
        assert!(!s.contains(PHONE), "{what} holds the raw phone number: {s}");
        assert!(!s.contains(ID_NO) && !s.contains(&ID_NO[..17]), "{what} holds the raw ID number: {s}");
    }

    pub fn masking_never_stores_raw_numbers(f: &dyn Fixture) {
        let s = f.open();
        let mut t = ticket("agent-1", 1000, &format!("我的电话{PHONE}，身份证{ID_NO}，小区门口积水。"));
        t.title = Some(format!("{PHONE}反映积水（{ID_NO}）"));
        t.needs_review = true;
        let id = s.insert(&t).unwrap();
        let mut d = decision(Verdict::Edited, 2000);
        d.reply = Some(format!("已联系{PHONE}，身份证{ID_NO}已核实。"));
        assert!(s.decide(id, &d).unwrap());
        let mut e = fb("f1", 3000, Some(id));
        e.input = format!("电话 {PHONE}");
        e.suggestion = format!("身份证 {ID_NO}");
        e.edited = Some(format!("{PHONE} / {ID_NO}"));
        e.comment = Some(format!("回拨{PHONE}"));
        assert!(s.add_feedback(&e).unwrap());

        let got = s.get(id).unwrap().unwrap();
        assert!(got.ticket.text.contains("[电话]") && got.ticket.text.contains("[身份证号]"), "{}", got.ticket.text);
        assert!(got.ticket.title.as_deref().unwrap().contains("[电话]"));
        assert!(got.decision.as_ref().unwrap().reply.as_deref().unwrap().contains("[身份证号]"));
        let mut everything = vec![serde_json::to_string(&got).unwrap()];
        everything.push(serde_json::to_string(&s.list(&q(10)).unwrap()).unwrap());
        everything.push(serde_json::to_string(&s.review_queue(10).unwrap()).unwrap());
        everything.push(serde_json::to_string(&s.feedback().unwrap()).unwrap());
        s.scan(&mut |t| {
            everything.push(serde_json::to_string(&t).unwrap());
            Ok(())
        })
        .unwrap();
        for e in &everything {
            assert_clean("what the store returns", e);
        }
        let fbk = &s.feedback().unwrap()[0];
        assert!(fbk.input.contains("[电话]") && fbk.suggestion.contains("[身份证号]"), "{fbk:?}");
        assert!(fbk.edited.as_deref().unwrap().contains("[电话]") && fbk.comment.as_deref().unwrap().contains("[电话]"), "{fbk:?}");

        // And not on disk either.
        for needle in [PHONE, ID_NO, &ID_NO[..17]] {
            let n = f.query_i64(&format!(
                "SELECT COUNT(*) FROM tickets WHERE text LIKE '%{needle}%' OR title LIKE '%{needle}%' OR decision LIKE '%{needle}%'"
            ));
            assert_eq!(n, 0, "a ticket row holds {needle}");
            let n = f.query_i64(&format!(
                "SELECT COUNT(*) FROM feedback WHERE input LIKE '%{needle}%' OR suggestion LIKE '%{needle}%' OR edited LIKE '%{needle}%' OR comment LIKE '%{needle}%'"
            ));
            assert_eq!(n, 0, "a feedback row holds {needle}");
        }
    }

    pub fn list_filters_and_pages(f: &dyn Fixture) {
        let s = f.open();
        let all: Vec<TicketId> = (0..10).map(|i| s.insert(&ticket(if i % 2 == 0 { "a" } else { "b" }, 1000 + i * 10, &format!("第{i}件"))).unwrap()).collect();
        let newest_first: Vec<TicketId> = all.iter().rev().copied().collect();
        assert_eq!(ids(&s.list(&q(100)).unwrap()), newest_first);
        assert_eq!(ids(&s.list(&q(usize::MAX)).unwrap()), newest_first, "usize::MAX means no limit");
        assert!(s.list(&q(0)).unwrap().is_empty());
        assert_eq!(ids(&s.list(&q(3)).unwrap()), newest_first[..3]);

        let a = s.list(&TicketQuery { key_id: Some("a".into()), limit: 100, ..Default::default() }).unwrap();
        assert_eq!(ids(&a), [all[8], all[6], all[4], all[2], all[0]]);
        assert!(a.iter().all(|t| t.ticket.key_id == "a"));
        assert!(s.list(&TicketQuery { key_id: Some("nobody".into()), limit: 100, ..Default::default() }).unwrap().is_empty());

        // since inclusive, until exclusive.
        let window = s.list(&TicketQuery { since_ms: Some(1030), until_ms: Some(1070), limit: 100, ..Default::default() }).unwrap();
        assert_eq!(ids(&window), [all[6], all[5], all[4], all[3]]);
        let since = s.list(&TicketQuery { since_ms: Some(1085), limit: 100, ..Default::default() }).unwrap();
        assert_eq!(ids(&since), [all[9]]);
        let until = s.list(&TicketQuery { until_ms: Some(1010), limit: 100, ..Default::default() }).unwrap();
        assert_eq!(ids(&until), [all[0]]);

        // Paging backwards by id: every ticket once, newest first.
        let (mut seen, mut before, mut pages) = (Vec::new(), None, Vec::new());
        loop {
            let page = s.list(&TicketQuery { before_id: before, limit: 3, ..Default::default() }).unwrap();
            if page.is_empty() {
                break;
            }
            pages.push(page.len());
            before = page.last().map(|t| t.id);
            seen.extend(ids(&page));
        }
        assert_eq!(seen, newest_first);
        assert_eq!(pages, [3, 3, 3, 1]);

        // All filters at once.
        let both = s.list(&TicketQuery { key_id: Some("b".into()), since_ms: Some(1010), until_ms: Some(1090), before_id: Some(all[7]), limit: 1 }).unwrap();
        assert_eq!(ids(&both), [all[5]]);
    }

    pub fn count_follows_inserts_and_deletes(f: &dyn Fixture) {
        let s = f.open();
        assert_eq!(s.count().unwrap(), 0);
        let a = s.insert(&ticket("a", 1, "一")).unwrap();
        s.insert(&ticket("a", 2, "二")).unwrap();
        assert_eq!(s.count().unwrap(), 2);
        assert!(s.delete(a).unwrap());
        assert_eq!(s.count().unwrap(), 1);
        assert_eq!(f.open().count().unwrap(), 1);
    }

    pub fn decide_latest_wins_and_sets_corrected(f: &dyn Fixture) {
        let s = f.open();
        let id = s.insert(&ticket("a", 1, "路灯不亮")).unwrap();
        let accepted = decision(Verdict::Accepted, 10);
        assert!(s.decide(id, &accepted).unwrap());
        assert_eq!(s.get(id).unwrap().unwrap().decision, Some(accepted.clone()));
        assert!(s.review_queue(10).unwrap().is_empty(), "accepted, not flagged: nothing to review");

        let mut edited = decision(Verdict::Edited, 20);
        edited.unit = Some("另一个单位".into());
        edited.final_unit = Some("办结单位".into());
        edited.closed = true;
        assert!(s.decide(id, &edited).unwrap());
        let got = s.get(id).unwrap().unwrap();
        assert_eq!(got.decision, Some(edited.clone()), "the latest decision wins");
        assert_eq!(got.effective_unit(), Some("办结单位"));
        assert_eq!(ids(&s.review_queue(10).unwrap()), [id], "an edit puts it in the queue");

        assert!(s.decide(id, &accepted).unwrap());
        assert_eq!(s.get(id).unwrap().unwrap().decision, Some(accepted.clone()));
        assert!(s.review_queue(10).unwrap().is_empty(), "accepted again: corrected is cleared");

        assert!(s.decide(id, &decision(Verdict::Rejected, 30)).unwrap());
        assert_eq!(ids(&s.review_queue(10).unwrap()), [id], "a rejection puts it in the queue");
        assert_eq!(s.get(id).unwrap().unwrap().decision.unwrap().verdict, Verdict::Rejected);

        assert!(!s.decide(id + 1000, &accepted).unwrap(), "no such ticket");
    }

    /// t1 flagged, t2 plain, t3 edited, t4 flagged, t5 accepted, t6 rejected (decided before t3).
    fn queue_setup(s: &dyn TicketStore) -> [TicketId; 6] {
        let mk = |i: i64, flagged: bool| {
            let mut t = ticket("a", 100 + i, &format!("工单{i}"));
            t.needs_review = flagged;
            s.insert(&t).unwrap()
        };
        let t = [mk(1, true), mk(2, false), mk(3, false), mk(4, true), mk(5, false), mk(6, false)];
        assert!(s.decide(t[5], &decision(Verdict::Rejected, 1)).unwrap());
        assert!(s.decide(t[2], &decision(Verdict::Edited, 2)).unwrap());
        assert!(s.decide(t[4], &decision(Verdict::Accepted, 3)).unwrap());
        t
    }

    pub fn review_queue_contents_and_order(f: &dyn Fixture) {
        let s = f.open();
        let t = queue_setup(&*s);
        assert_eq!(ids(&s.review_queue(100).unwrap()), [t[0], t[2], t[3], t[5]], "flagged or corrected, oldest first");
        assert_eq!(ids(&s.review_queue(2).unwrap()), [t[0], t[2]]);
        assert!(s.review_queue(0).unwrap().is_empty());
        assert_eq!(ids(&s.review_queue(usize::MAX).unwrap()), [t[0], t[2], t[3], t[5]]);
        let q = s.review_queue(100).unwrap();
        assert_eq!(q[1].decision.as_ref().unwrap().verdict, Verdict::Edited, "queue rows are whole records");
    }

    pub fn review_leaves_queue_and_lists_reviewed(f: &dyn Fixture) {
        let s = f.open();
        let t = queue_setup(&*s);
        assert!(s.reviewed().unwrap().is_empty());
        let r3 = review("审核员甲", 5000);
        assert!(s.review(t[2], &r3).unwrap());
        assert_eq!(ids(&s.review_queue(100).unwrap()), [t[0], t[3], t[5]]);
        let reviewed = s.reviewed().unwrap();
        assert_eq!(ids(&reviewed), [t[2]]);
        assert_eq!(reviewed[0].review, Some(r3.clone()));
        assert_eq!(s.get(t[2]).unwrap().unwrap().review, Some(r3));

        // Reviewed later but older: reviewed() is oldest ticket first, not by review time.
        assert!(s.review(t[0], &review("审核员乙", 9000)).unwrap());
        // A ticket that was never in the queue can be reviewed too.
        assert!(s.review(t[1], &review("审核员乙", 9100)).unwrap());
        assert_eq!(ids(&s.reviewed().unwrap()), [t[0], t[1], t[2]]);
        assert_eq!(ids(&s.review_queue(100).unwrap()), [t[3], t[5]]);

        // A second review replaces the first.
        let again = Review { note: Some("改判".into()), ..review("审核员丙", 9500) };
        assert!(s.review(t[2], &again).unwrap());
        assert_eq!(s.get(t[2]).unwrap().unwrap().review, Some(again));
        // A decision after the review does not put it back in the queue.
        assert!(s.decide(t[2], &decision(Verdict::Edited, 9600)).unwrap());
        assert_eq!(ids(&s.review_queue(100).unwrap()), [t[3], t[5]]);

        assert!(!s.review(t[5] + 1000, &review("x", 1)).unwrap(), "no such ticket");
    }

    pub fn delete_removes_ticket_and_its_feedback(f: &dyn Fixture) {
        let s = f.open();
        let (a, b) = (s.insert(&ticket("a", 1, "一")).unwrap(), s.insert(&ticket("a", 2, "二")).unwrap());
        for e in [fb("f1", 1, Some(a)), fb("f2", 2, Some(a)), fb("f3", 3, Some(b)), fb("f4", 4, None)] {
            assert!(s.add_feedback(&e).unwrap());
        }
        assert!(s.delete(a).unwrap());
        assert_eq!(s.get(a).unwrap(), None);
        assert!(s.get(b).unwrap().is_some());
        let left: Vec<String> = s.feedback().unwrap().into_iter().map(|e| e.id).collect();
        assert_eq!(left, ["f3", "f4"]);
        assert!(!s.delete(a).unwrap(), "already gone");
        assert_eq!(s.count().unwrap(), 1);
        // The deleted feedback id is free again.
        assert!(s.add_feedback(&fb("f1", 5, Some(b))).unwrap());
    }

    pub fn purge_before_removes_old_tickets_and_their_feedback(f: &dyn Fixture) {
        let s = f.open();
        let t: Vec<TicketId> = [300, 100, 400, 200].iter().map(|&at| s.insert(&ticket("a", at, "旧")).unwrap()).collect();
        for e in [fb("f100", 1, Some(t[1])), fb("f300", 2, Some(t[0])), fb("f200", 3, Some(t[3])), fb("fnone", 4, None)] {
            assert!(s.add_feedback(&e).unwrap());
        }
        assert_eq!(s.purge_before(0).unwrap(), 0);
        assert_eq!(s.purge_before(300).unwrap(), 2, "received before 300 (not at 300)");
        let mut left: Vec<i64> = s.list(&q(100)).unwrap().iter().map(|t| t.ticket.received_at_ms).collect();
        left.sort();
        assert_eq!(left, [300, 400]);
        let fbk: Vec<String> = s.feedback().unwrap().into_iter().map(|e| e.id).collect();
        assert_eq!(fbk, ["f300", "fnone"]);
        assert_eq!(s.purge_before(i64::MAX).unwrap(), 2);
        assert_eq!(s.count().unwrap(), 0);
    }

    pub fn prior_candidates_by_reporter_and_town(f: &dyn Fixture) {
        let s = f.open();
        let mk = |at: i64, reporter: Option<&str>, town: Option<&str>| {
            let mut t = ticket("a", at, "同一件事");
            t.reporter = reporter.map(Into::into);
            t.town = town.map(Into::into);
            // The fine place is not what repeats are looked up by.
            t.place = Some("P1·某路".into());
            s.insert(&t).unwrap()
        };
        // Inserted out of time order: the answer is ordered by received time, not id.
        let r300 = mk(300, Some("r1"), None);
        let r100 = mk(100, Some("r1"), Some("P2"));
        let r200 = mk(200, Some("r1"), Some("P1"));
        let p250 = mk(250, Some("r2"), Some("P1"));
        let p260 = mk(260, None, Some("P2"));
        let _other = mk(270, Some("r3"), Some("P3"));

        assert_eq!(ids(&s.prior_candidates(Some("r1"), None, 0, 10).unwrap()), [r300, r200, r100]);
        assert_eq!(ids(&s.prior_candidates(None, Some("P1"), 0, 10).unwrap()), [p250, r200]);
        assert_eq!(ids(&s.prior_candidates(Some("r1"), Some("P1"), 0, 10).unwrap()), [r300, p250, r200, r100]);
        assert_eq!(ids(&s.prior_candidates(Some("r2"), Some("P2"), 0, 10).unwrap()), [p260, p250, r100]);
        assert_eq!(ids(&s.prior_candidates(Some("r1"), Some("P1"), 200, 10).unwrap()), [r300, p250, r200], "since is inclusive");
        assert_eq!(ids(&s.prior_candidates(Some("r1"), Some("P1"), 0, 2).unwrap()), [r300, p250]);
        assert!(s.prior_candidates(Some("r1"), None, 301, 10).unwrap().is_empty());
        assert!(s.prior_candidates(None, None, 0, 10).unwrap().is_empty());
        assert!(s.prior_candidates(Some("nobody"), Some("nowhere"), 0, 10).unwrap().is_empty());
        assert!(s.prior_candidates(None, Some("P1·某路"), 0, 10).unwrap().is_empty(), "matched by town, not by place");
        assert!(s.prior_candidates(Some("r1"), None, 0, 0).unwrap().is_empty());
    }

    pub fn add_feedback_is_idempotent_and_ordered(f: &dyn Fixture) {
        let s = f.open();
        let t = s.insert(&ticket("a", 1, "一")).unwrap();
        let mut e_b = fb("b", 200, Some(t));
        e_b.citations = Vec::new();
        e_b.edited = None;
        e_b.comment = Some("备注".into());
        let entries = [e_b.clone(), fb("z", 100, None), fb("a", 200, Some(t)), fb("B", 200, None)];
        for e in &entries {
            assert!(s.add_feedback(e).unwrap(), "{} is new", e.id);
        }
        let changed = FeedbackEntry { input: "改过的".into(), at_ms: 1, ..e_b.clone() };
        assert!(!s.add_feedback(&changed).unwrap(), "an id already stored is skipped");
        assert!(!s.add_feedback(&e_b).unwrap());

        let masked = |e: &FeedbackEntry| FeedbackEntry {
            input: m(&e.input),
            suggestion: m(&e.suggestion),
            edited: e.edited.as_deref().map(m),
            comment: e.comment.as_deref().map(m),
            ..e.clone()
        };
        // Oldest first; ties by id, bytewise ("B" < "a" < "b").
        let want: Vec<FeedbackEntry> = [&entries[1], &entries[3], &entries[2], &entries[0]].into_iter().map(masked).collect();
        assert_eq!(s.feedback().unwrap(), want);
        assert_eq!(f.open().feedback().unwrap(), want);
    }

    pub fn scan_pages_over_many_rows(f: &dyn Fixture) {
        let s = f.open();
        const N: usize = 2345;
        let mut inserted = Vec::with_capacity(N);
        for i in 0..N {
            inserted.push(s.insert(&ticket("a", i as i64, &format!("第{i}件"))).unwrap());
        }
        let mut seen = Vec::with_capacity(N);
        let n = s
            .scan(&mut |t| {
                if seen.len() % 1000 == 0 {
                    // The store is usable from inside the callback (nothing is held across it).
                    assert_eq!(s.get(t.id).unwrap().unwrap().id, t.id);
                }
                assert_eq!(t.ticket.text, format!("第{}件", t.ticket.received_at_ms));
                seen.push(t.id);
                Ok(())
            })
            .unwrap();
        assert_eq!(n, N as u64);
        assert_eq!(seen, inserted, "every ticket once, oldest first");

        // A callback's error stops the scan and comes back.
        let mut calls = 0;
        let r = s.scan(&mut |_| {
            calls += 1;
            if calls == 5 {
                Err(StoreError::InvalidInput("stop".into()))
            } else {
                Ok(())
            }
        });
        assert!(matches!(r, Err(StoreError::InvalidInput(ref m)) if m == "stop"), "{r:?}");
        assert_eq!(calls, 5);
        assert_eq!(f.open().scan(&mut |_| Ok(())).unwrap(), N as u64);
    }

    pub fn import_feedback_log_twice_skips_torn_line(f: &dyn Fixture) {
        let s = f.open();
        let path = f.scratch().join("feedback.jsonl");
        let line = |id: &str, at: u64, input: &str| {
            json!({"id": id, "at_unix_ms": at, "key_id": "agent-1", "target": "reply", "verdict": "accept",
                   "input": input, "suggestion": "建议", "citations": ["kb:1"]})
            .to_string()
        };
        let text = format!(
            "{}\n{}\n\n{}\n{}",
            line("old-1", 1000, &format!("电话{PHONE}")),
            line("old-2", 2000, "二"),
            json!({"id": "old-3", "at_unix_ms": 3000u64, "key_id": "k", "target": "t", "verdict": "reject", "input": "三", "suggestion": "s",
                   "edited": "改", "comment": "评"}),
            r#"{"id": "old-4", "at_unix_ms": 4000, "key_id": "agent-1", "targ"#,
        );
        std::fs::write(&path, text).unwrap();

        let (r1, bad1) = import_feedback_log(&*s, &path).unwrap();
        assert_eq!(r1, ImportReport { imported: 3, already: 0, skipped: 1 });
        assert_eq!(bad1, [5], "the torn last line (line 5) is skipped");
        let (r2, bad2) = import_feedback_log(&*s, &path).unwrap();
        assert_eq!(r2, ImportReport { imported: 0, already: 3, skipped: 1 });
        assert_eq!(bad2, [5]);

        let got = s.feedback().unwrap();
        assert_eq!(got.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["old-1", "old-2", "old-3"]);
        assert_eq!(got[0].at_ms, 1000);
        assert_eq!(got[0].ticket_id, None);
        assert_eq!(got[0].citations, ["kb:1"]);
        assert!(got[0].input.contains("[电话]") && !got[0].input.contains(PHONE), "{}", got[0].input);
        assert_eq!((got[2].edited.as_deref(), got[2].comment.as_deref()), (Some("改"), Some("评")));
        assert!(got[1].citations.len() == 1 && got[2].citations.is_empty());

        assert!(import_feedback_log(&*s, &f.scratch().join("missing.jsonl")).is_err());
    }

    pub fn migrate_v1_to_v2_keeps_rows_and_flags_corrected(f: &dyn Fixture) {
        let v1 = f.open_at(1).unwrap();
        assert_eq!(v1.schema_version().unwrap(), 1);
        // The v1 store writes only v1 columns on insert and add_feedback.
        let mk = |i: i64, flagged: bool| {
            let mut t = full_ticket();
            t.received_at_ms = 1000 + i;
            t.needs_review = flagged;
            v1.insert(&t).unwrap()
        };
        let t = [mk(1, true), mk(2, false), mk(3, false), mk(4, false), mk(5, false)];
        assert!(v1.add_feedback(&fb("v1-feedback", 7, Some(t[1]))).unwrap());
        // Decisions as version 1 stored them (no `corrected` column yet).
        for (id, verdict) in [(t[1], Verdict::Edited), (t[2], Verdict::Accepted), (t[3], Verdict::Rejected)] {
            let d = serde_json::to_string(&decision(verdict, 42)).unwrap().replace('\'', "''");
            f.exec(&format!("UPDATE tickets SET decision = '{d}', decision_verdict = '{}' WHERE id = {id}", verdict.as_str()));
        }
        drop(v1);
        // Reopening at version 1 changes nothing.
        assert_eq!(f.open_at(1).unwrap().schema_version().unwrap(), 1);

        let s = f.open_at(2).unwrap();
        assert_eq!(s.schema_version().unwrap(), 2);
        assert_eq!(f.query_i64("SELECT COUNT(*) FROM schema_migrations"), 2);
        assert_eq!(s.count().unwrap(), 5);
        for (i, &id) in t.iter().enumerate() {
            let got = s.get(id).unwrap().unwrap();
            let mut want = stored(&full_ticket());
            want.received_at_ms = 1000 + i as i64 + 1;
            want.needs_review = i == 0;
            assert_eq!(got.ticket, want, "ticket {id} intact");
            assert_eq!(got.review, None);
        }
        assert_eq!(s.get(t[1]).unwrap().unwrap().decision, Some(decision(Verdict::Edited, 42)));
        assert_eq!(ids(&s.review_queue(100).unwrap()), [t[0], t[1], t[3]], "flagged, edited and rejected under v1 are in the queue");
        assert_eq!(s.feedback().unwrap(), vec![FeedbackEntry { input: m("输入 v1-feedback"), ..fb("v1-feedback", 7, Some(t[1])) }]);

        // The v2 features work on migrated rows.
        assert!(s.review(t[1], &review("r", 1)).unwrap());
        assert_eq!(ids(&s.review_queue(100).unwrap()), [t[0], t[3]]);
        assert_eq!(ids(&s.prior_candidates(full_ticket().reporter.as_deref(), None, 1003, 10).unwrap()), [t[4], t[3], t[2]]);
        // Opening again migrates nothing more.
        assert_eq!(f.open_at(2).unwrap().schema_version().unwrap(), 2);
        assert_eq!(f.query_i64("SELECT COUNT(*) FROM schema_migrations"), 2);
    }

    pub fn newer_schema_is_refused(f: &dyn Fixture) {
        let s = f.open();
        s.insert(&ticket("a", 1, "一")).unwrap();
        drop(s);
        f.exec(&format!("INSERT INTO schema_migrations (version, applied_at_ms) VALUES ({}, 0)", LATEST + 1));
        for version in 1..=LATEST as usize {
            let err = match f.open_at(version) {
                Ok(_) => panic!("a schema newer than the binary was opened (at version {version})"),
                Err(e) => e,
            };
            let msg = err.to_string();
            assert!(matches!(err, StoreError::Database(_)), "{err:?}");
            assert!(msg.contains(&format!("schema version {}", LATEST + 1)) && msg.contains("newer"), "{msg}");
            assert!(msg.contains(&f.expected_location()), "the error names the database: {msg}");
            if let Some(secret) = f.secret() {
                assert!(!msg.contains(secret), "{msg}");
            }
        }
        // Refusing changed nothing.
        assert_eq!(f.query_i64("SELECT COUNT(*) FROM tickets"), 1);
        assert_eq!(f.query_i64("SELECT MAX(version) FROM schema_migrations"), LATEST + 1);
    }

    pub fn concurrent_first_open_migrates_once(f: &dyn Fixture) {
        const N: usize = 4;
        let barrier = Barrier::new(N);
        let versions: Vec<i64> = std::thread::scope(|sc| {
            let handles: Vec<_> = (0..N)
                .map(|_| {
                    sc.spawn(|| {
                        barrier.wait();
                        let s = f.open_at(LATEST as usize).unwrap_or_else(|e| panic!("a concurrent first open failed: {e}"));
                        s.schema_version().unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(versions, [LATEST; N]);
        assert_eq!(f.query_i64("SELECT COUNT(*) FROM schema_migrations"), LATEST);
    }

    fn hammer(stores: &[Arc<dyn TicketStore>], threads_per_store: usize, per_thread: usize) -> Vec<TicketId> {
        std::thread::scope(|sc| {
            let mut handles = Vec::new();
            for (si, store) in stores.iter().enumerate() {
                for th in 0..threads_per_store {
                    let store = store.clone();
                    handles.push(sc.spawn(move || {
                        (0..per_thread)
                            .map(|i| {
                                let mut t = ticket(&format!("w{si}-{th}"), i as i64, &format!("{si}/{th}/{i}"));
                                t.embedding = Some(vec![si as f32, th as f32, i as f32]);
                                store.insert(&t).unwrap_or_else(|e| panic!("insert {si}/{th}/{i}: {e}"))
                            })
                            .collect::<Vec<_>>()
                    }));
                }
            }
            handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
        })
    }

    fn check_hammered(f: &dyn Fixture, stores: usize, threads: usize, per_thread: usize, returned: Vec<TicketId>) {
        let total = stores * threads * per_thread;
        assert_eq!(returned.len(), total);
        let unique: HashSet<TicketId> = returned.iter().copied().collect();
        assert_eq!(unique.len(), total, "insert returned the same id twice");
        let s = f.open();
        assert_eq!(s.count().unwrap(), total as u64);
        let mut scanned = HashSet::new();
        s.scan(&mut |t| {
            let e = t.ticket.embedding.as_deref().unwrap();
            assert_eq!(t.ticket.text, format!("{}/{}/{}", e[0], e[1], e[2]), "row {} is whole", t.id);
            assert_eq!(t.ticket.key_id, format!("w{}-{}", e[0], e[1]));
            scanned.insert(t.id);
            Ok(())
        })
        .unwrap();
        assert_eq!(scanned, unique, "the stored ids are the returned ones");
        for si in 0..stores {
            for th in 0..threads {
                let mine = s.list(&TicketQuery { key_id: Some(format!("w{si}-{th}")), limit: 10_000, ..Default::default() }).unwrap();
                assert_eq!(mine.len(), per_thread);
            }
        }
    }

    pub fn concurrent_writers_one_store(f: &dyn Fixture) {
        let store: Arc<dyn TicketStore> = Arc::from(f.open());
        let ids = hammer(&[store], 8, 200);
        check_hammered(f, 1, 8, 200, ids);
    }

    pub fn concurrent_writers_two_stores(f: &dyn Fixture) {
        let stores: Vec<Arc<dyn TicketStore>> = vec![Arc::from(f.open()), Arc::from(f.open())];
        let ids = hammer(&stores, 8, 200);
        check_hammered(f, 2, 8, 200, ids);
    }
}

// ---- PostgreSQL only: connections, the pool, the harness itself ----

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn postgres_unreachable_fails_fast_naming_the_redacted_url() {
    let port = free_port();
    let url = format!("postgresql://xg:hunter2@127.0.0.1:{port}/xg");
    let start = std::time::Instant::now();
    let err = match PostgresStore::connect(&url) {
        Ok(_) => panic!("connected to a closed port"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    assert!(msg.contains(&format!("postgresql://xg:***@127.0.0.1:{port}/xg")), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
    assert!(start.elapsed() < std::time::Duration::from_secs(8), "took {:?}", start.elapsed());
    // Through the crate's `open` too.
    let msg = xiaoguan_tickets::open(&url).err().expect("refused").to_string();
    assert!(msg.contains(":***@") && !msg.contains("hunter2"), "{msg}");
}

#[test]
fn postgres_connect_timeout_is_bounded() {
    // An address that answers nothing (TEST-NET-1, RFC 5737): either the network says
    // "unreachable" at once or the 5 s connect timeout ends it; never the OS's minutes.
    let start = std::time::Instant::now();
    let r = PostgresStore::connect("postgresql://xg:pw@192.0.2.1:5432/xg");
    let msg = r.err().expect("nothing listens there").to_string();
    assert!(msg.contains("postgresql://xg:***@192.0.2.1:5432/xg"), "{msg}");
    assert!(start.elapsed() < std::time::Duration::from_secs(12), "took {:?}: {msg}", start.elapsed());
}

#[test]
fn postgres_bad_url_is_invalid_input() {
    let err = PostgresStore::connect("postgresql://xg:pw@127.0.0.1:notaport/xg").err().expect("refused");
    assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
    assert!(!err.to_string().contains(":pw@"), "{err}");
}

#[test]
fn postgres_reopens_a_connection_the_server_killed() {
    let url = support::pg::fresh_database("reopen");
    let s = PostgresStore::connect(&url).unwrap();
    let first = s.insert(&xiaoguan_tickets::NewTicket { key_id: "a".into(), text: "一".into(), ..Default::default() }).unwrap();
    let dbname = url.rsplit('/').next().unwrap().to_string();
    let mut admin = support::pg::shared().admin().unwrap();
    let killed: i64 = admin
        .query_one("SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", &[&dbname])
        .unwrap()
        .get(0);
    assert!(killed >= 1, "the store's pooled connection was there to kill");
    // The first call after may fail on the dead connection (which is then dropped); the next
    // one opens a fresh connection.
    let after = s.get(first);
    let again = s.get(first).unwrap_or_else(|e| panic!("the second call after the kill still failed: {e} (first: {after:?})"));
    assert_eq!(again.unwrap().id, first);
    assert_eq!(s.count().unwrap(), 1);
}

#[test]
fn postgres_pool_stays_bounded() {
    let url = support::pg::fresh_database("pool");
    let s = Arc::new(PostgresStore::connect(&url).unwrap());
    std::thread::scope(|sc| {
        for th in 0..20 {
            let s = s.clone();
            sc.spawn(move || {
                for i in 0..25 {
                    s.insert(&xiaoguan_tickets::NewTicket { key_id: format!("k{th}"), received_at_ms: i, text: "t".into(), ..Default::default() }).unwrap();
                }
            });
        }
    });
    assert_eq!(s.count().unwrap(), 500);
    let dbname = url.rsplit('/').next().unwrap().to_string();
    let mut admin = support::pg::shared().admin().unwrap();
    let open: i64 = admin
        .query_one("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'xiaoguan'", &[&dbname])
        .unwrap()
        .get(0);
    assert!((1..=8).contains(&open), "{open} connections open for one store");
}

#[test]
fn pg_harness_stops_its_server_and_removes_its_folder_on_drop() {
    let server = support::pg::PgServer::start().unwrap_or_else(|e| panic!("cannot run the PostgreSQL tests: {e}"));
    let (pid, dir) = (server.pid(), server.dir().to_path_buf());
    assert!(dir.join("data").join("PG_VERSION").is_file());
    let url = server.create_database("harness").unwrap();
    let s = PostgresStore::connect(&url).unwrap();
    assert_eq!(s.schema_version().unwrap(), 3);
    drop(s);
    drop(server);
    assert!(!dir.exists(), "{} is left behind", dir.display());
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "the server (pid {pid}) still runs");
}
