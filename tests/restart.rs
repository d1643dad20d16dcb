//! Persistence: what was acknowledged is there after a restart, indexes included.

use crate::common::{TempDir, connect, count, explain, start_server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_catalog_and_indexes_survive_a_restart() {
    let dir = TempDir::new("restart");
    let server = start_server(dir.path()).await;
    let client = connect(&server).await;
    client
        .batch_execute(
            "CREATE TABLE docs (id BIGINT, category TEXT, embedding VECTOR(2));
             INSERT INTO docs SELECT value, CASE WHEN value % 2 = 0 THEN 'even' ELSE 'odd' END, '[' || cos(value) || ',' || sin(value) || ']' FROM generate_series(1, 300);
             CREATE INDEX docs_idx ON docs USING ivf_flat (embedding) WITH (metric = 'cosine', num_partitions = 2);
             CREATE INDEX ON docs (category);
             DELETE FROM docs WHERE id = 44;",
        )
        .await
        .expect("write");
    drop(client);
    server.shutdown().await.expect("stop");

    let server = start_server(dir.path()).await;
    let client = connect(&server).await;
    let n: i64 = count(&client, "docs").await;
    assert_eq!(n, 299);
    let plan = explain(
        &client,
        "EXPLAIN SELECT id FROM vector_search('docs', 'embedding', '[1,0]', 2)",
    )
    .await;
    assert!(
        plan.contains("index=docs_idx (ivf_flat)") && plan.contains("metric=cosine"),
        "{plan}"
    );
    let ids: Vec<i64> = client
        .query(
            "SELECT id FROM vector_search('docs', 'embedding', '[1,0]', 2) WHERE category = 'odd'",
            &[],
        )
        .await
        .expect("search")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec![289, 245]);
    let err = client
        .batch_execute("CREATE TABLE docs (id BIGINT)")
        .await
        .expect_err("exists");
    assert_eq!(err.as_db_error().map(|e| e.code().code()), Some("42P07"));
    server.shutdown().await.expect("stop");
}
