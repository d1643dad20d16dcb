//! `kill -9` during writes: after a restart every acknowledged statement is
//! there whole, and no statement is there in part.

use std::time::Duration;

use crate::common::{TempDir, client, count, free_port, random_vectors, spawn_server, vector_text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_keeps_acknowledged_statements_whole() {
    let dir = TempDir::new("crash");
    let port = free_port();
    let mut server = spawn_server(dir.path(), port).await;
    let c = client(port).await;
    c.batch_execute("CREATE TABLE w (id BIGINT, embedding VECTOR(16))")
        .await
        .expect("create");
    let vectors = random_vectors(100, 16, 5);
    let rows: Vec<String> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| format!("({i}, '{}')", vector_text(v)))
        .collect();
    let insert = format!("INSERT INTO w VALUES {}", rows.join(","));
    // Keep inserting until killed; count the statements the server acknowledged.
    let writer = tokio::spawn(async move {
        let mut acked = 0u64;
        while c.batch_execute(&insert).await.is_ok() {
            acked += 1;
            if acked == 400 {
                break;
            }
        }
        acked
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.start_kill().expect("kill -9");
    let _ = server.wait().await;
    let acked = writer.await.expect("writer");
    assert!(acked > 0, "no statement was acknowledged before the kill");

    let mut server = spawn_server(dir.path(), port).await;
    let c = client(port).await;
    let n: i64 = count(&c, "w").await;
    assert_eq!(n % 100, 0, "a statement is there in part: {n} rows");
    assert!(
        n as u64 >= acked * 100,
        "acknowledged {acked} statements, found {n} rows"
    );
    assert!(
        n as u64 <= (acked + 1) * 100,
        "more statements than were sent: {n} rows"
    );
    // The table still takes writes and searches.
    c.batch_execute(&format!(
        "INSERT INTO w VALUES (1000, '{}')",
        vector_text(&vectors[0])
    ))
    .await
    .expect("write after crash");
    let hit: i64 = c
        .query_one(
            &format!(
                "SELECT id FROM vector_search('w', 'embedding', '{}', 1) WHERE id >= 1000",
                vector_text(&vectors[0])
            ),
            &[],
        )
        .await
        .expect("search")
        .get(0);
    assert_eq!(hit, 1000);
    server.start_kill().expect("stop");
    let _ = server.wait().await;
}
