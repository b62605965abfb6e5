//! Conversation cases of the conformance suite (run on both backends by `conformance!`).

use super::Fixture;
use serde_json::json;
use std::sync::{Arc, Barrier};
use xiaoguan_tickets::*;

fn turn(role: &str, content: &str) -> ConversationTurn {
    ConversationTurn::new(role, content)
}

/// A user question and its answer, as the answer API appends them.
fn pair(q: &str, a: &str) -> [ConversationTurn; 2] {
    [turn("user", q), turn("assistant", a)]
}

fn contents(v: &[ConversationTurn]) -> Vec<&str> {
    v.iter().map(|t| t.content.as_str()).collect()
}

fn is_invalid(r: Result<impl std::fmt::Debug>) -> String {
    match r {
        Err(StoreError::InvalidInput(m)) => m,
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

pub fn migrate_v2_to_v3_keeps_tickets_and_adds_conversations(f: &dyn Fixture) {
    let v2 = f.open_at(2).unwrap();
    let t = NewTicket { key_id: "a".into(), received_at_ms: 5, text: "旧工单".into(), predictions: json!({}), kb_versions: json!({}), models: json!({}), ..Default::default() };
    let id = v2.insert(&t).unwrap();
    drop(v2);

    let s = f.open();
    assert_eq!(s.schema_version().unwrap(), 3);
    assert_eq!(f.query_i64("SELECT COUNT(*) FROM schema_migrations"), 3);
    assert_eq!(s.get(id).unwrap().unwrap().ticket, t, "the v2 ticket is intact");
    s.append_conversation("k", "c", &pair("问", "答"), 10, 1).unwrap();
    assert_eq!(contents(&s.conversation("k", "c").unwrap()), ["问", "答"]);
    drop(s);
    // Opening again migrates nothing more and keeps the conversation.
    let s = f.open();
    assert_eq!(f.query_i64("SELECT COUNT(*) FROM schema_migrations"), 3);
    assert_eq!(s.conversation("k", "c").unwrap().len(), 2);
}

pub fn conversation_round_trip_masked_and_in_order(f: &dyn Fixture) {
    let s = f.open();
    assert!(s.conversation("k", "never-seen").unwrap().is_empty(), "an unknown conversation is empty, not an error");
    s.append_conversation("k", "c1", &pair("社保卡补办需要哪些材料", "携带身份证到网点补领。"), 40, 100).unwrap();
    s.append_conversation("k", "c1", &pair("我的电话 13800138000 能查进度吗", "可以。"), 40, 200).unwrap();
    // Appending nothing changes nothing (and creates nothing).
    s.append_conversation("k", "c1", &[], 40, 300).unwrap();
    s.append_conversation("k", "empty", &[], 40, 300).unwrap();
    assert_eq!(f.query_i64("SELECT COUNT(*) FROM conversations"), 1);

    let got = s.conversation("k", "c1").unwrap();
    let masked = xiaoguan_text::mask_pii("我的电话 13800138000 能查进度吗").text;
    assert_ne!(masked, "我的电话 13800138000 能查进度吗", "the masker changes phone numbers");
    assert_eq!(
        got,
        vec![turn("user", "社保卡补办需要哪些材料"), turn("assistant", "携带身份证到网点补领。"), turn("user", &masked), turn("assistant", "可以。")]
    );
    // A second handle on the same database (another replica) reads the same turns.
    assert_eq!(f.open().conversation("k", "c1").unwrap(), got);
    // A long id of multibyte characters: the limit counts characters, not bytes.
    let long_id = "会".repeat(MAX_CONVERSATION_ID_CHARS);
    s.append_conversation("k", &long_id, &[turn("user", "长编号")], 40, 1).unwrap();
    assert_eq!(contents(&s.conversation("k", &long_id).unwrap()), ["长编号"]);
}

pub fn conversation_keeps_newest_max_turns(f: &dyn Fixture) {
    let s = f.open();
    for i in 0..7 {
        s.append_conversation("k", "c", &pair(&format!("q{i}"), &format!("a{i}")), 5, i).unwrap();
    }
    // 14 turns appended, the newest 5 kept, in order (an odd limit cuts a pair in half).
    assert_eq!(contents(&s.conversation("k", "c").unwrap()), ["a4", "q5", "a5", "q6", "a6"]);
    assert_eq!(f.query_i64("SELECT COUNT(*) FROM conversation_turns"), 5, "trimmed turns are deleted, not hidden");
    // Exactly max_turns at once is allowed and replaces everything older.
    s.append_conversation("k", "c", &[turn("user", "x"), turn("assistant", "y"), turn("user", "z")], 3, 10).unwrap();
    assert_eq!(contents(&s.conversation("k", "c").unwrap()), ["x", "y", "z"]);
    // A larger limit later keeps what is there and grows again.
    s.append_conversation("k", "c", &pair("q", "a"), 40, 11).unwrap();
    assert_eq!(contents(&s.conversation("k", "c").unwrap()), ["x", "y", "z", "q", "a"]);
}

pub fn conversation_is_only_visible_to_its_owner(f: &dyn Fixture) {
    let s = f.open();
    s.append_conversation("agent-a", "shared-id", &pair("甲的问题", "甲的回答"), 40, 1).unwrap();
    assert!(s.conversation("agent-b", "shared-id").unwrap().is_empty(), "another key sees nothing under the same id");
    s.append_conversation("agent-b", "shared-id", &pair("乙的问题", "乙的回答"), 40, 2).unwrap();
    assert_eq!(contents(&s.conversation("agent-a", "shared-id").unwrap()), ["甲的问题", "甲的回答"]);
    assert_eq!(contents(&s.conversation("agent-b", "shared-id").unwrap()), ["乙的问题", "乙的回答"]);
    // The key is the pair, not a concatenation: ("x", "y:z") and ("x:y", "z") stay apart.
    s.append_conversation("x", "y:z", &[turn("user", "one")], 40, 3).unwrap();
    s.append_conversation("x:y", "z", &[turn("user", "two")], 40, 3).unwrap();
    assert_eq!(contents(&s.conversation("x", "y:z").unwrap()), ["one"]);
    assert_eq!(contents(&s.conversation("x:y", "z").unwrap()), ["two"]);
}

pub fn purge_conversations_before_removes_stale_ones(f: &dyn Fixture) {
    let s = f.open();
    s.append_conversation("k", "old", &pair("q", "a"), 40, 1_000).unwrap();
    s.append_conversation("k", "kept-alive", &pair("q", "a"), 40, 1_000).unwrap();
    s.append_conversation("k", "kept-alive", &pair("q2", "a2"), 40, 5_000).unwrap();
    s.append_conversation("other", "new", &pair("q", "a"), 40, 6_000).unwrap();
    assert_eq!(s.purge_conversations_before(5_000).unwrap(), 1, "only the one not appended to since");
    assert!(s.conversation("k", "old").unwrap().is_empty());
    assert_eq!(s.conversation("k", "kept-alive").unwrap().len(), 4);
    assert_eq!(s.conversation("other", "new").unwrap().len(), 2);
    assert_eq!(f.query_i64("SELECT COUNT(*) FROM conversation_turns"), 6, "the purged conversation's turns went with it");
    assert_eq!(s.purge_conversations_before(5_000).unwrap(), 0);
    // An id purged is new again: its next turns start a fresh conversation.
    s.append_conversation("k", "old", &[turn("user", "again")], 40, 7_000).unwrap();
    assert_eq!(contents(&s.conversation("k", "old").unwrap()), ["again"]);
    // A clock behind the stored time (another replica's) does not make a conversation look older.
    s.append_conversation("other", "new", &[turn("user", "late clock")], 40, 10).unwrap();
    // At 6,000 only kept-alive (idle since 5,000) goes; "new" keeps its 6,000, not the late 10.
    assert_eq!(s.purge_conversations_before(6_000).unwrap(), 1);
    assert_eq!(s.conversation("other", "new").unwrap().len(), 3);
    assert_eq!(s.purge_conversations_before(i64::MAX).unwrap(), 2);
    assert_eq!(f.query_i64("SELECT COUNT(*) FROM conversation_turns"), 0);
}

pub fn trim_conversations_keeps_most_recent(f: &dyn Fixture) {
    let s = f.open();
    for i in 0..6 {
        s.append_conversation(&format!("k{}", i % 2), &format!("c{i}"), &pair("q", "a"), 40, 100 + i).unwrap();
    }
    // c0 is appended to again: now the most recent.
    s.append_conversation("k0", "c0", &[turn("user", "again")], 40, 1_000).unwrap();
    assert_eq!(s.trim_conversations(10).unwrap(), 0, "fewer than keep: nothing to do");
    assert_eq!(s.trim_conversations(3).unwrap(), 3);
    let alive: Vec<bool> = (0..6).map(|i| !s.conversation(&format!("k{}", i % 2), &format!("c{i}")).unwrap().is_empty()).collect();
    assert_eq!(alive, [true, false, false, false, true, true], "c0 (renewed), c5 and c4 are kept");
    assert_eq!(f.query_i64("SELECT COUNT(*) FROM conversation_turns"), 3 + 2 + 2);
    assert_eq!(s.trim_conversations(0).unwrap(), 3);
    assert_eq!(f.query_i64("SELECT COUNT(*) FROM conversations"), 0);
    assert_eq!(f.query_i64("SELECT COUNT(*) FROM conversation_turns"), 0);
}

pub fn concurrent_appends_from_two_stores_lose_no_turns(f: &dyn Fixture) {
    const STORES: usize = 2;
    const THREADS: usize = 4;
    const APPENDS: usize = 25;
    let stores: Vec<Arc<dyn TicketStore>> = (0..STORES).map(|_| Arc::from(f.open())).collect();
    let barrier = Barrier::new(STORES * THREADS);
    std::thread::scope(|sc| {
        for (si, store) in stores.iter().enumerate() {
            for th in 0..THREADS {
                let (store, barrier) = (store.clone(), &barrier);
                sc.spawn(move || {
                    barrier.wait();
                    for i in 0..APPENDS {
                        let tag = format!("{si}/{th}/{i}");
                        store
                            .append_conversation("k", "busy", &pair(&format!("q {tag}"), &format!("a {tag}")), 10_000, i as i64)
                            .unwrap_or_else(|e| panic!("append {tag}: {e}"));
                    }
                });
            }
        }
    });
    let got = stores[0].conversation("k", "busy").unwrap();
    assert_eq!(got.len(), STORES * THREADS * APPENDS * 2, "every turn of every append is there");
    let mut next = vec![0usize; STORES * THREADS];
    for p in got.chunks(2) {
        // Each append's two turns are adjacent (appends never interleave) …
        let tag = p[0].content.strip_prefix("q ").unwrap_or_else(|| panic!("a question first: {p:?}"));
        assert_eq!(p[1].content, format!("a {tag}"), "{p:?}");
        assert_eq!((p[0].role.as_str(), p[1].role.as_str()), ("user", "assistant"));
        // … and one writer's appends keep their order.
        let n: Vec<usize> = tag.split('/').map(|x| x.parse().unwrap()).collect();
        let w = n[0] * THREADS + n[1];
        assert_eq!(n[2], next[w], "writer {w} out of order");
        next[w] += 1;
    }
    assert_eq!(next, vec![APPENDS; STORES * THREADS]);
    // Concurrent appends under a small limit leave exactly the limit.
    std::thread::scope(|sc| {
        for store in &stores {
            let store = store.clone();
            sc.spawn(move || {
                for i in 0..20 {
                    store.append_conversation("k", "small", &pair(&format!("q{i}"), "a"), 6, i).unwrap();
                }
            });
        }
    });
    assert_eq!(stores[1].conversation("k", "small").unwrap().len(), 6);
    assert_eq!(f.query_i64("SELECT COUNT(*) FROM conversations"), 2);
}

pub fn conversation_bad_input_is_refused(f: &dyn Fixture) {
    let s = f.open();
    let one = [turn("user", "q")];
    assert!(is_invalid(s.append_conversation("k", "", &one, 40, 1)).contains("empty"));
    assert!(is_invalid(s.conversation("k", "")).contains("empty"));
    let too_long = "x".repeat(MAX_CONVERSATION_ID_CHARS + 1);
    let m = is_invalid(s.append_conversation("k", &too_long, &one, 40, 1));
    assert!(m.contains("201") && m.contains("200"), "{m}");
    is_invalid(s.conversation("k", &too_long));
    is_invalid(s.append_conversation("", "c", &one, 40, 1));
    is_invalid(s.conversation("", "c"));
    assert!(is_invalid(s.append_conversation("k", "c", &one, 0, 1)).contains("max_turns"));
    let m = is_invalid(s.append_conversation("k", "c", &pair("q", "a"), 1, 1));
    assert!(m.contains("2 turns") && m.contains("max_turns (1)"), "{m}");
    is_invalid(s.append_conversation("k", "c", &[turn("", "no role")], 40, 1));
    assert!(is_invalid(s.append_conversation("k", "c\u{0}d", &one, 40, 1)).contains("NUL"));
    assert!(is_invalid(s.conversation("k\u{0}", "c")).contains("NUL"));
    // Nothing refused was written, not even half.
    assert_eq!(f.query_i64("SELECT COUNT(*) FROM conversations"), 0);
    assert_eq!(f.query_i64("SELECT COUNT(*) FROM conversation_turns"), 0);
    // A NUL inside the text is the one thing content cannot carry: dropped, the same on both backends.
    s.append_conversation("k", "c", &[turn("user", "a\u{0}b")], 40, 1).unwrap();
    assert_eq!(contents(&s.conversation("k", "c").unwrap()), ["ab"]);
}
