//! The SQL recipes under `examples/` run cleanly through psql.

use crate::common::{TempDir, psql_available, start_server};

/// Runs an example file with psql (ON_ERROR_STOP) and returns its output.
async fn run_example(file: &str, vars: &[(&str, String)]) -> Option<String> {
    if !psql_available(file) {
        return None;
    }
    let dir = TempDir::new("examples");
    let server = start_server(dir.path()).await;
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(file);
    let mut cmd = tokio::process::Command::new("psql");
    for (name, value) in vars {
        cmd.arg("-v").arg(format!("{name}={value}"));
    }
    let out = cmd
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
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "psql failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    server.shutdown().await.expect("shutdown");
    Some(stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_sql_runs_in_psql() {
    let Some(stdout) = run_example("01_quickstart.sql", &[]).await else {
        return;
    };
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_rerank_sql_runs_in_psql() {
    let path = |name: &str| crate::udf::example_module_path(name).display().to_string();
    let vars = [("lexical", path("lexical_boost")), ("mmr", path("mmr"))];
    let Some(stdout) = run_example("02_wasm_rerank.sql", &vars).await else {
        return;
    };
    eprintln!("{stdout}");
    assert!(stdout.contains("CREATE FUNCTION"), "{stdout}");
    assert!(stdout.contains("4|red apple salad|"), "{stdout}");
    assert!(
        stdout.contains("public|mmr_rank|int8|vector, float8, float8|window"),
        "{stdout}"
    );
    assert!(
        stdout.contains("public|lexical_boost|float8|doc text, query text|func"),
        "{stdout}"
    );
}
