//! The SQL recipes under `examples/` run cleanly through psql.

use crate::common::{TempDir, psql_available, start_server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_sql_runs_in_psql() {
    if !psql_available("quickstart_sql_runs_in_psql") {
        return;
    }
    let dir = TempDir::new("examples");
    let server = start_server(dir.path()).await;
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/01_quickstart.sql");
    let out = tokio::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &server.addr.port().to_string(),
            "-U",
            "postgres",
            "-X",
            "-A",
            "-t",
        ])
        .args(["-v", "ON_ERROR_STOP=1", "-f"])
        .arg(&file)
        .output()
        .await
        .expect("psql runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "psql failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    // Filter-first: the two verb.motion rows, though the query is nearest to the plants.
    assert!(
        stdout.contains("4|walk: move on foot at a slow pace|"),
        "{stdout}"
    );
    assert!(stdout.contains("3|run: move fast on foot|"), "{stdout}");
    assert!(
        stdout.contains("VectorSearchExec: table=quickstart"),
        "{stdout}"
    );
    assert!(
        stdout.contains("index=quickstart_embedding_idx (ivf_hnsw_sq)"),
        "{stdout}"
    );
    server.shutdown().await.expect("shutdown");
}
