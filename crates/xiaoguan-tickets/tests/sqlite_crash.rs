//! Durability of the SQLite store across processes: writer processes insert tickets and print
//! each id once `insert` has returned; one is killed with SIGKILL mid-stream. Every printed id
//! must be in the file afterwards, with its text intact, and the file must pass SQLite's
//! integrity check. The writers are this test binary re-run in "writer" mode.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use xiaoguan_tickets::sqlite::SqliteStore;
use xiaoguan_tickets::{NewTicket, TicketStore};

const WRITER_ENV: &str = "XG_TICKETS_CRASH_WRITER_DB";

/// In writer mode (the env var set), insert until killed or 2,000 rows; print each committed id.
#[test]
fn writer_process() {
    let Ok(db) = std::env::var(WRITER_ENV) else { return };
    let tag = std::env::var("XG_WRITER_TAG").unwrap_or_default();
    let store = SqliteStore::open(std::path::Path::new(&db)).unwrap();
    for i in 0..2000 {
        let t = NewTicket { key_id: tag.clone(), received_at_ms: i, text: format!("{tag} 第{i}件 楼道灯坏了"), embedding: Some(vec![i as f32; 8]), ..Default::default() };
        let id = store.insert(&t).unwrap();
        println!("committed {id} {i}");
    }
}

fn spawn_writer(db: &std::path::Path, tag: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "writer_process", "--nocapture", "--test-threads=1"])
        .env(WRITER_ENV, db)
        .env("XG_WRITER_TAG", tag)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn a_kill_9_during_writes_loses_no_committed_ticket_and_two_processes_write_one_file() {
    if std::env::var(WRITER_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tickets.db");
    drop(SqliteStore::open(&db).unwrap());
    let mut killed = spawn_writer(&db, "killed");
    let survivor = spawn_writer(&db, "survivor");
    let mut committed: Vec<(i64, String)> = Vec::new();
    let reader = BufReader::new(killed.stdout.take().unwrap());
    let started = Instant::now();
    for line in reader.lines() {
        let line = line.unwrap();
        // The harness prints "test writer_process ... " before the first line.
        let Some(at) = line.find("committed ") else { continue };
        let mut parts = line[at..].split_whitespace().skip(1);
        let id: i64 = parts.next().unwrap().parse().unwrap();
        let i: i64 = parts.next().unwrap().parse().unwrap();
        committed.push((id, format!("killed 第{i}件 楼道灯坏了")));
        if committed.len() >= 150 || started.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    // SIGKILL: no destructor, no flush, mid-transaction with luck.
    unsafe { libc_kill(killed.id() as i32, 9) };
    let _ = killed.wait();
    let out = survivor.wait_with_output().unwrap();
    assert!(out.status.success(), "the second writer failed next to the killed one");
    let survivor_ids: Vec<i64> = String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.find("committed ").map(|at| &l[at + 10..])).map(|l| l.split_whitespace().next().unwrap().parse().unwrap()).collect();
    assert_eq!(survivor_ids.len(), 2000, "{}", String::from_utf8_lossy(&out.stdout).chars().take(600).collect::<String>());
    assert!(committed.len() >= 50, "the killed writer committed too little to test ({})", committed.len());

    let store = SqliteStore::open(&db).unwrap();
    for (id, text) in &committed {
        let t = store.get(*id).unwrap().unwrap_or_else(|| panic!("committed ticket {id} is lost"));
        assert_eq!(&t.ticket.text, text);
        assert_eq!(t.ticket.embedding.as_ref().map(Vec::len), Some(8));
    }
    for id in &survivor_ids {
        assert!(store.get(*id).unwrap().is_some(), "ticket {id} of the surviving writer is lost");
    }
    let mut ids: Vec<i64> = committed.iter().map(|c| c.0).chain(survivor_ids.iter().copied()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), committed.len() + 2000, "ids are unique across processes");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
