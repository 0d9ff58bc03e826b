//! The writer thread's group commit: concurrent writes share transactions,
//! and one write's failure undoes only that write.

use rusqlite::params;
use salestrack_core::ports::{BackendError, OutboundRecord, Producer};
use salestrack_embedded::sqlite::Db;
use salestrack_embedded::EmbeddedBus;
use std::collections::HashSet;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT NOT NULL);";

fn db(dir: &tempfile::TempDir) -> Db {
    Db::open("test db", &dir.path().join("t.sqlite"), SCHEMA).expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_commits_and_a_failing_one_undoes_only_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = db(&dir);
    let writes = (0..200i64).map(|i| {
        let db = db.clone();
        tokio::spawn(async move {
            db.write(move |c| {
                // Two rows per write; write 13 inserts its first row's id
                // again (whatever order the writes run in), so its own first
                // row must be undone too.
                let err = |e: rusqlite::Error| BackendError::new("test db", e);
                c.execute("INSERT INTO t (id, v) VALUES (?1, 'a')", params![i * 2])
                    .map_err(err)?;
                let second = if i == 13 { i * 2 } else { i * 2 + 1 };
                c.execute("INSERT INTO t (id, v) VALUES (?1, 'b')", params![second])
                    .map_err(err)?;
                Ok(i)
            })
            .await
        })
    });
    let results = futures::future::join_all(writes).await;
    let failed: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| !matches!(r, Ok(Ok(_))))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(failed, vec![13], "only the write that broke the key failed");
    let ids: HashSet<i64> = db
        .read(|c| {
            let mut stmt = c
                .prepare("SELECT id FROM t")
                .map_err(|e| BackendError::new("t", e))?;
            let ids = stmt
                .query_map([], |r| r.get(0))
                .map_err(|e| BackendError::new("t", e))?
                .collect::<Result<HashSet<i64>, _>>()
                .map_err(|e| BackendError::new("t", e));
            ids
        })
        .await
        .expect("read");
    assert_eq!(ids.len(), 398, "199 writes of two rows");
    assert!(
        !ids.contains(&26),
        "the failed write's first row was undone"
    );
    assert!(
        db.commits() < 200,
        "200 concurrent writes took {} commits",
        db.commits()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_on_the_bus_get_distinct_offsets_in_shared_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = EmbeddedBus::open(&dir.path().join("bus.sqlite"), 1).expect("bus");
    let sends = (0..100).map(|i: i32| {
        let bus = bus.clone();
        tokio::spawn(async move {
            bus.send(OutboundRecord {
                topic: "t".into(),
                key: b"one key".to_vec(),
                value: i.to_be_bytes().to_vec(),
                headers: vec![],
            })
            .await
        })
    });
    let mut offsets: Vec<i64> = futures::future::join_all(sends)
        .await
        .into_iter()
        .map(|r| r.expect("task").expect("sent").offset)
        .collect();
    offsets.sort_unstable();
    assert_eq!(offsets, (0..100).collect::<Vec<i64>>());
    assert_eq!(bus.topic_len("t").await.expect("len"), 100);
}
