//! Real clients: tokio-postgres (extended protocol, parameters, COPY) and psql.

use futures::SinkExt;
use tokio_postgres::SimpleQueryMessage;

use crate::common::{
    TempDir, Vector, connect, copy_payload, count, explain, psql, psql_available, random_vectors,
    run_client_script, run_client_script_with, run_java_program, run_node_script, start_server,
    vector_text,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_vector_search_with_parameters() {
    let dir = TempDir::new("prepared");
    let server = start_server(dir.path()).await;
    let client = connect(&server).await;
    client
        .batch_execute("CREATE TABLE docs (id BIGINT, bucket INT, embedding VECTOR(4)); INSERT INTO docs VALUES (1, 0, '[1,0,0,0]'), (2, 1, '[0,1,0,0]'), (3, 0, '[0,0,1,0]'), (4, 1, '[1,1,0,0]')")
        .await
        .expect("setup");
    // A named prepared statement with the vector as a text $1, executed twice.
    let stmt = client
        .prepare(
            "SELECT id FROM vector_search('docs', 'embedding', $1::vector, 2) WHERE bucket = 1",
        )
        .await
        .expect("prepare");
    let rows = client
        .query(&stmt, &[&Vector::text("[1,0,0,0]")])
        .await
        .expect("run");
    assert_eq!(
        rows.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>(),
        vec![4, 2]
    );
    let rows = client
        .query(&stmt, &[&Vector::text("[0,1,0,0]")])
        .await
        .expect("run again");
    assert_eq!(
        rows.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>(),
        vec![2, 4]
    );
    // The pgvector form with typed parameters.
    let rows = client
        .query(
            "SELECT id FROM docs WHERE bucket = $2 ORDER BY embedding <-> $1 LIMIT 1",
            &[&Vector::text("[0,0,1,0]"), &0i32],
        )
        .await
        .expect("order by");
    assert_eq!(rows[0].get::<_, i64>(0), 3);
    // EXPLAIN of the pgvector form with a bound parameter.
    let rows = client
        .query(
            "EXPLAIN SELECT id FROM docs WHERE bucket = $2 ORDER BY embedding <-> $1 LIMIT 1",
            &[&Vector::text("[0,0,1,0]"), &0i32],
        )
        .await
        .expect("explain with parameters");
    let plan: String = rows
        .iter()
        .map(|r| r.get::<_, String>(1))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(plan.contains("VectorSearchExec"), "{plan}");
    // Parameters in writes.
    client
        .execute(
            "INSERT INTO docs VALUES ($1, $2, $3)",
            &[&5i64, &1i32, &Vector::text("[0,0,0,1]")],
        )
        .await
        .expect("insert");
    let n: i64 = client
        .query_one("SELECT count(*) FROM docs WHERE id = $1", &[&5i64])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 1);
    // An error does not break the connection.
    let err = client
        .query(
            "SELECT * FROM vector_search('docs', 'embedding', $1::vector, 2)",
            &[&Vector::text("[1,2]")],
        )
        .await
        .expect_err("dims");
    assert_eq!(err.as_db_error().map(|e| e.code().code()), Some("22000"));
    let n: i64 = count(&client, "docs").await;
    assert_eq!(n, 5);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out() {
    let dir = TempDir::new("copy");
    let server = start_server(dir.path()).await;
    let client = connect(&server).await;
    client
        .batch_execute("CREATE TABLE v (id BIGINT, bucket INT, embedding VECTOR(8))")
        .await
        .expect("create");
    let vectors = random_vectors(500, 8, 7);
    let sink = client.copy_in("COPY v FROM STDIN").await.expect("copy in");
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from(copy_payload(&vectors)))
        .await
        .expect("send");
    let n = sink.finish().await.expect("finish");
    assert_eq!(n, 500);
    let rows: i64 = count(&client, "v").await;
    assert_eq!(rows, 500);
    // CSV with a header.
    let sink = client
        .copy_in("COPY v (id, embedding) FROM STDIN WITH (FORMAT csv, HEADER true)")
        .await
        .expect("csv");
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from(format!(
        "id,embedding\n900,\"{}\"\n",
        vector_text(&vectors[0])
    )))
    .await
    .expect("send");
    assert_eq!(sink.finish().await.expect("finish"), 1);
    // A bad row fails the whole COPY and writes nothing.
    let sink = client.copy_in("COPY v FROM STDIN").await.expect("copy in");
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from("1\t0\t[1,2,3]\n"))
        .await
        .expect("send");
    let err = sink.finish().await.expect_err("wrong dimension");
    assert_eq!(err.as_db_error().map(|e| e.code().code()), Some("22000"));
    let rows: i64 = count(&client, "v").await;
    assert_eq!(rows, 501);
    // COPY (query) TO STDOUT.
    let msgs = client.simple_query("SELECT 1").await.expect("alive");
    assert!(matches!(
        msgs.last(),
        Some(SimpleQueryMessage::CommandComplete(1))
    ));
    let out = client
        .copy_out("COPY (SELECT id, embedding FROM v WHERE id < 2 ORDER BY id) TO STDOUT")
        .await
        .expect("copy out");
    let chunks: Vec<bytes::Bytes> = futures::TryStreamExt::try_collect(out).await.expect("read");
    let text: String = chunks
        .iter()
        .map(|c| String::from_utf8_lossy(c).to_string())
        .collect();
    assert_eq!(
        text,
        format!(
            "0\t{}\n1\t{}\n",
            vector_text(&vectors[0]),
            vector_text(&vectors[1])
        )
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_the_vector_search_node() {
    let dir = TempDir::new("explain");
    let server = start_server(dir.path()).await;
    let client = connect(&server).await;
    client.batch_execute("CREATE TABLE docs (id BIGINT, bucket INT, embedding VECTOR(2)); SET quiver.nprobes = 7").await.expect("setup");
    for sql in [
        "EXPLAIN SELECT id FROM docs WHERE bucket < 1 ORDER BY embedding <=> '[1,0]' LIMIT 5",
        "EXPLAIN SELECT id FROM vector_search('docs', 'embedding', '[1,0]', 5, 'cosine') WHERE bucket < 1",
    ] {
        let text = explain(&client, sql).await;
        assert!(
            text.contains("VectorSearchExec: table=docs, column=embedding, k=5, metric=cosine"),
            "{text}"
        );
        assert!(text.contains("filter=[bucket < "), "{text}");
        assert!(text.contains("nprobes=7"), "{text}");
        // Ordered by the search's own `_distance`: no distance is computed again above it.
        assert!(!text.contains("cosine_distance"), "{text}");
    }
    // Through a view or a subquery in FROM that filters the table: the
    // k-NN goes into it and runs as the filter-first search (k rows, ordered
    // again above it); with a filter outside, it does not (that would lose rows).
    client
        .batch_execute("CREATE VIEW low AS SELECT id, embedding AS e FROM docs WHERE bucket < 1")
        .await
        .expect("view");
    for sql in [
        "EXPLAIN SELECT id FROM low ORDER BY e <=> '[1,0]' LIMIT 5",
        "EXPLAIN SELECT s.id, s.e <=> '[1,0]' AS d FROM (SELECT id, embedding AS e FROM docs \
         WHERE bucket < 1) s ORDER BY d LIMIT 3 OFFSET 2",
    ] {
        let text = explain(&client, sql).await;
        assert!(
            text.contains("VectorSearchExec: table=docs, column=embedding, k=5, metric=cosine"),
            "{text}"
        );
        assert!(text.contains("filter=[bucket < "), "{text}");
    }
    let text = explain(
        &client,
        "EXPLAIN SELECT id FROM low WHERE id > 3 ORDER BY e <=> '[1,0]' LIMIT 5",
    )
    .await;
    assert!(!text.contains("VectorSearchExec"), "{text}");
    server.shutdown().await.expect("shutdown");
}

/// psql, the client people type into: scripts with several statements, \copy, errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_session() {
    if !psql_available("psql_session") {
        return;
    }
    let dir = TempDir::new("psql");
    let server = start_server(dir.path()).await;
    let csv = dir.path().join("rows.csv");
    std::fs::write(&csv, "1,apple,\"[1,0]\"\n2,pear,\"[0,1]\"\n").expect("csv");
    let script = format!(
        "CREATE TABLE f (id BIGINT, name TEXT, embedding VECTOR(2));\n\
         \\copy f FROM '{}' WITH (FORMAT csv)\n\
         SELECT id, name, embedding FROM f ORDER BY embedding <-> '[1,0.1]' LIMIT 1;\n\
         SELECT * FROM missing_table;\n\
         SELECT count(*) AS n FROM f;\n",
        csv.display()
    );
    let (stdout2, stderr2) = psql(server.addr.port(), &script).await;
    assert!(
        stdout2.contains("1|apple|[1,0]"),
        "stdout: {stdout2}\nstderr: {stderr2}"
    );
    assert!(
        stderr2.contains("ERROR:") && stderr2.contains("missing_table"),
        "{stderr2}"
    );
    assert!(
        stdout2.trim_end().ends_with('2'),
        "count after the error: {stdout2}"
    );
    // \d shows keys as indexes and foreign keys both ways.
    let (stdout3, stderr3) = psql(
        server.addr.port(),
        "\\pset tuples_only off\n\
         \\pset format aligned\n\
         CREATE TABLE p (id INT PRIMARY KEY, name TEXT UNIQUE);\n\
         CREATE TABLE ch (id INT PRIMARY KEY, pid INT REFERENCES p (id) ON DELETE CASCADE, meta JSONB);\n\
         \\d ch\n\
         \\d p\n",
    )
    .await;
    for want in [
        "\"ch_pkey\" PRIMARY KEY, btree (id)",
        "Foreign-key constraints:",
        "\"ch_pid_fkey\" FOREIGN KEY (pid) REFERENCES p(id) ON DELETE CASCADE",
        "| jsonb",
        "\"p_name_key\" UNIQUE CONSTRAINT, btree (name)",
        "Referenced by:",
        "TABLE \"ch\" CONSTRAINT \"ch_pid_fkey\"",
    ] {
        assert!(
            stdout3.contains(want),
            "{want} missing:\n{stdout3}\nstderr: {stderr3}"
        );
    }
    server.shutdown().await.expect("shutdown");
}

// Real Python drivers with pgvector-python, as applications use them
// (tests/clients/*.py; .ci/run installs tests/clients/requirements.txt).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg3_with_register_vector() {
    run_client_script("psycopg3_pgvector.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg2_with_register_vector() {
    run_client_script("psycopg2_pgvector.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_with_register_vector() {
    run_client_script("asyncpg_pgvector.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlalchemy_orm_with_pgvector() {
    run_client_script("sqlalchemy_orm.py").await;
}

// RAG stores: langchain-postgres' PGVector and LlamaIndex's PGVectorStore.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn langchain_pgvector_store() {
    run_client_script("langchain_pgvector.py").await;
}

/// LangChain's default: `embedding vector` without a dimension.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn langchain_pgvector_store_dimensionless() {
    run_client_script_with("langchain_pgvector.py", &["dimensionless"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llamaindex_pgvector_store() {
    run_client_script("llamaindex_pgvector.py").await;
}

/// node-postgres (`pg`): parameters, jsonb / uuid / timestamptz / bigint /
/// array parsing, named prepared statements, SQLSTATEs, transactions, a pool
/// writing and searching at once (tests/clients/node_pg.js).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres_stores_and_searches_embeddings() {
    run_node_script("node_pg.js").await;
}

/// pgJDBC: prepared statements past the server-side threshold, a k-NN
/// search with parameters, transactions, SQLSTATEs, and the
/// DatabaseMetaData calls JDBC tools browse schemas with (getTables,
/// getColumns, getPrimaryKeys, getIndexInfo) (tests/clients/JdbcClient.java).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc_metadata_and_queries() {
    run_java_program("JdbcClient.java").await;
}
