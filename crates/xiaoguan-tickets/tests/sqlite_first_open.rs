//! Several processes (here: threads with their own connections) opening one new SQLite file at
//! once, as two service replicas starting together do: every open succeeds. Switching a new file
//! to WAL is not covered by SQLite's busy handler, and that race once failed a replica's start
//! with "database is locked".

use std::sync::Barrier;
use xiaoguan_tickets::sqlite::SqliteStore;
use xiaoguan_tickets::TicketStore;

#[test]
fn concurrent_first_opens_of_a_new_file_all_succeed() {
    const THREADS: usize = 8;
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tickets.db");
        let barrier = Barrier::new(THREADS);
        std::thread::scope(|sc| {
            let handles: Vec<_> = (0..THREADS)
                .map(|_| {
                    sc.spawn(|| {
                        barrier.wait();
                        SqliteStore::open(&path).unwrap_or_else(|e| panic!("round {round}: a concurrent first open failed: {e}")).schema_version().unwrap()
                    })
                })
                .collect();
            let versions: Vec<i64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            assert!(versions.windows(2).all(|w| w[0] == w[1]), "{versions:?}");
        });
    }
}
