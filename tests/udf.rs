//! User functions in WebAssembly: the Rust example re-rankers built from
//! `examples/wasm` with the guest SDK, hand-written WAT modules following the
//! ABI, the catalog life of a function (persisted, `\df`, DROP), and the
//! evil-guest corpus under `tests/wasm/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use crate::common::{TempDir, Vector, connect, psql_available, start_server};

#[path = "../examples/wasm/lexical_boost/src/logic.rs"]
mod lexical_logic;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The target the example modules are built for.
const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Adds [`WASM_TARGET`] to the toolchain when rustup manages it and lacks
/// it: `rust-toolchain.toml` lists the target, but rustup adds the targets
/// listed there only when it installs the toolchain itself, not to a
/// toolchain that was already on the machine.
fn ensure_wasm_target() {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(root())
        .output();
    let Ok(out) = installed else {
        return; // no rustup: the build below says what is missing
    };
    if !out.status.success()
        || String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.trim() == WASM_TARGET)
    {
        return;
    }
    eprintln!(
        "adding the {WASM_TARGET} target with rustup (the example re-rankers are built for it)"
    );
    let added = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .current_dir(root())
        .status();
    assert!(
        added.is_ok_and(|s| s.success()),
        "rustup target add {WASM_TARGET} failed"
    );
}

/// Builds `examples/wasm` for wasm32-unknown-unknown (once per test run) and
/// returns the path of the module `name`.
pub fn example_module_path(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        ensure_wasm_target();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join("target"))
            .join("wasm-examples");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args([
                "build",
                "--release",
                "--target",
                WASM_TARGET,
                "--manifest-path",
            ])
            .arg(root().join("examples/wasm/Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .expect("run cargo");
        assert!(
            out.status.success(),
            "building examples/wasm for {WASM_TARGET} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        target.join(WASM_TARGET).join("release")
    });
    dir.join(format!("{name}.wasm"))
}

fn example_module(name: &str) -> Vec<u8> {
    std::fs::read(example_module_path(name)).expect("built module")
}

/// A WAT fixture with the shared prelude substituted.
pub(crate) fn wat(name: &str) -> String {
    let read =
        |f: &str| std::fs::read_to_string(root().join("tests/wasm").join(f)).expect("fixture");
    read(&format!("{name}.wat")).replace(";;PRELUDE", &read("prelude.wat"))
}

/// Module bytes as a bytea hex literal body.
fn hex(bytes: &[u8]) -> String {
    let mut s = String::from("\\x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

async fn expect_error(client: &tokio_postgres::Client, sql: &str, code: &str) -> String {
    match client.simple_query(sql).await {
        Ok(_) => panic!("expected {code} from: {}", &sql[..sql.len().min(200)]),
        Err(e) => {
            assert_eq!(sqlstate(&e), code, "{e:?}");
            let msg = e
                .as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or_default();
            eprintln!("  {code}: {msg}");
            msg
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_rerankers_from_the_examples() {
    let lexical = example_module("lexical_boost");
    let mmr = example_module("mmr");
    let dir = TempDir::new("udf-rust");
    let server = start_server(dir.path()).await;
    let client = connect(&server).await;
    let docs = [
        (1, "a red apple on the table", "[1,0.1,0]"),
        (2, "red apples, red cherries", "[1,0.11,0]"),
        (3, "a green pear", "[1,0,0.5]"),
        (4, "The Apple company", "[0,1,0]"),
        (5, "bananas are yellow", "[0,0,1]"),
        (6, "", "[0.5,0.5,0.5]"),
    ];
    client
        .batch_execute("CREATE TABLE docs (id BIGINT, body TEXT, embedding VECTOR(3))")
        .await
        .expect("create");
    for (id, body, v) in docs {
        client
            .execute(
                "INSERT INTO docs VALUES ($1, $2, $3)",
                &[&(id as i64), &body, &Vector::text(v)],
            )
            .await
            .expect("insert");
    }
    client
        .batch_execute(&format!(
            "CREATE FUNCTION lexical_boost(doc text, query text) RETURNS float8 LANGUAGE wasm AS '{}';
             CREATE FUNCTION mmr_rank(vector, float8, float8) RETURNS int8 LANGUAGE wasm WINDOW AS '{}'
                 WITH (memory_limit = '16MB', timeout_ms = 500);",
            hex(&lexical),
            hex(&mmr)
        ))
        .await
        .expect("create functions");

    // Every row's score matches the same logic compiled natively.
    for query in ["red apple", "APPLE", "green pears", "", "zebra"] {
        let rows = client
            .query(
                "SELECT id, body, lexical_boost(body, $1) FROM vector_search('docs', 'embedding', '[1,0,0]', 10) ORDER BY id",
                &[&query],
            )
            .await
            .expect("lexical_boost");
        assert_eq!(rows.len(), docs.len());
        for r in rows {
            let body: String = r.get(1);
            let got: f64 = r.get(2);
            assert_eq!(
                got,
                lexical_logic::lexical_boost(&body, query),
                "{body:?} / {query:?}"
            );
        }
    }
    // The re-ranking query of the issue: boost minus distance, best first.
    let rows = client
        .query(
            "SELECT id, lexical_boost(body, 'red apple') - _distance AS score
             FROM vector_search('docs', 'embedding', '[0,1,0]', 100, 'cosine')
             ORDER BY score DESC LIMIT 3",
            &[],
        )
        .await
        .expect("rerank");
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        ids[0], 4,
        "the exact vector match also has 'apple': {ids:?}"
    );
    assert!(ids.contains(&1) && ids.contains(&2), "{ids:?}");
    // NULL text: NULL boost (the SDK skips the body for a NULL argument).
    let row = client
        .query_one("SELECT lexical_boost(NULL, 'red') IS NULL", &[])
        .await
        .expect("null");
    assert!(row.get::<_, bool>(0));

    // MMR: with lambda = 1 the order is the relevance order; with 0.3 the
    // near-duplicate of the best candidate (id 2 of id 1) no longer comes second.
    let ranks = |lambda: f64| {
        let client = &client;
        async move {
            let rows = client
                .query(
                    "SELECT id, mmr_rank(embedding, 1 - _distance, $1) OVER () AS r
                     FROM vector_search('docs', 'embedding', '[1,0,0]', 5, 'cosine') ORDER BY r",
                    &[&lambda],
                )
                .await
                .expect("mmr");
            rows.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>()
        }
    };
    let by_relevance: Vec<i64> = client
        .query(
            "SELECT id FROM vector_search('docs', 'embedding', '[1,0,0]', 5, 'cosine') ORDER BY _distance",
            &[],
        )
        .await
        .expect("plain")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ranks(1.0).await, by_relevance);
    assert_eq!(&by_relevance[..2], &[1, 2]);
    let diverse = ranks(0.3).await;
    assert_eq!(diverse[0], 1);
    assert_ne!(diverse[1], 2, "near-duplicate should sink: {diverse:?}");
    let mut sorted = diverse.clone();
    sorted.sort();
    assert_eq!(sorted.len(), 5);
    let msg = expect_error(
        &client,
        "SELECT mmr_rank(embedding, 1 - _distance, 7.0) OVER () FROM vector_search('docs', 'embedding', '[1,0,0]', 5)",
        "38000",
    )
    .await;
    assert!(msg.contains("lambda must be between 0 and 1"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sdk_type_round_trips() {
    let module = hex(&example_module("vector_tools"));
    let dir = TempDir::new("udf-types");
    let server = start_server(dir.path()).await;
    let client = connect(&server).await;
    client
        .batch_execute(&format!(
            "CREATE TABLE t (id INT, flag BOOL, n BIGINT, score REAL, body TEXT, v VECTOR(2));
             INSERT INTO t VALUES (1, true, 3, 0.5, 'Red apple', '[3,4]'),
                                  (2, NULL, 0, 1.25, 'pear', '[0,0]'),
                                  (3, false, 7, -2, NULL, NULL);
             CREATE FUNCTION normalize(vector) RETURNS vector LANGUAGE wasm AS '{module}';
             CREATE FUNCTION has_word(text, text) RETURNS bool LANGUAGE wasm AS '{module}';
             CREATE FUNCTION describe_row(bool, int4, float4) RETURNS text LANGUAGE wasm AS '{module}';"
        ))
        .await
        .expect("setup");
    let rows = client
        .simple_query("SELECT normalize(v), has_word(body, 'APPLE'), describe_row(flag, n, score) FROM t ORDER BY id")
        .await
        .expect("call");
    let got: Vec<[Option<String>; 3]> = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some([0, 1, 2].map(|i| r.get(i).map(str::to_string)))
            }
            _ => None,
        })
        .collect();
    let s = |x: &str| Some(x.to_string());
    assert_eq!(
        got,
        vec![
            [s("[0.6,0.8]"), s("t"), s("yes/3/0.50")],
            [s("[0,0]"), s("f"), s("unknown/0/1.25")],
            [None, None, s("no/7/-2.00")],
        ]
    );
    let msg = expect_error(&client, "SELECT describe_row(true, -1, 0)", "38000").await;
    assert!(msg.ends_with("count must not be negative, got -1"), "{msg}");
    // A vector argument given as text: a literal, a parameter, NULL.
    let row = client
        .query_one(
            "SELECT vector_norm(normalize('[0,5]')), vector_norm(normalize($1)), normalize(NULL) IS NULL",
            &[&"[1,1]"],
        )
        .await
        .expect("vector from text");
    let (a, b): (f64, f64) = (row.get(0), row.get(1));
    assert!((a - 1.0).abs() < 1e-6 && (b - 1.0).abs() < 1e-6, "{a} {b}");
    assert!(row.get::<_, bool>(2));
    expect_error(&client, "SELECT normalize('[1,2')", "22P02").await;
    // A vector result feeds a vector function.
    let row = client
        .query_one("SELECT vector_dims(normalize(v)) FROM t WHERE id = 1", &[])
        .await
        .expect("vector_dims");
    assert_eq!(row.get::<_, i32>(0), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_are_catalog_objects() {
    let dir = TempDir::new("udf-catalog");
    let server = start_server(dir.path()).await;
    let client = connect(&server).await;
    let other = connect(&server).await;
    let double = wat("double");
    client
        .batch_execute(&format!(
            "CREATE TABLE t (x BIGINT);
             INSERT INTO t VALUES (1), (2), (NULL), (4);
             CREATE FUNCTION double_it(float8) RETURNS float8 LANGUAGE wasm AS '{double}';"
        ))
        .await
        .expect("create");
    // Another connection sees it; NULL in, NULL out; a constant argument works too.
    let rows = other
        .query("SELECT double_it(x) FROM t ORDER BY x", &[])
        .await
        .expect("call");
    let got: Vec<Option<f64>> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(got, vec![Some(2.0), Some(4.0), Some(8.0), None]);
    let row = other
        .query_one("SELECT double_it(2.5)", &[])
        .await
        .expect("scalar");
    assert_eq!(row.get::<_, f64>(0), 5.0);
    // A parameter takes the function's declared argument type (or its cast's).
    let row = other
        .query_one("SELECT double_it($1), $2::float8", &[&1.5f64, &0.5f64])
        .await
        .expect("typed params");
    assert_eq!((row.get::<_, f64>(0), row.get::<_, f64>(1)), (3.0, 0.5));

    expect_error(
        &client,
        &format!("CREATE FUNCTION double_it(float8) RETURNS float8 LANGUAGE wasm AS '{double}'"),
        "42723",
    )
    .await;
    expect_error(
        &client,
        &format!("CREATE FUNCTION abs(float8) RETURNS float8 LANGUAGE wasm AS '{double}'"),
        "42723",
    )
    .await;
    expect_error(
        &client,
        "CREATE FUNCTION f(int) RETURNS int LANGUAGE plpgsql AS 'begin return 1; end'",
        "0A000",
    )
    .await;
    expect_error(
        &client,
        &format!("CREATE FUNCTION f(jsonb) RETURNS float8 LANGUAGE wasm AS '{double}'"),
        "0A000",
    )
    .await;
    expect_error(
        &client,
        &format!("CREATE FUNCTION f(float8) RETURNS float8 LANGUAGE wasm AS '{double}' WITH (timeout_ms = 0)"),
        "22023",
    )
    .await;
    expect_error(&client, "SELECT double_it(x, x) FROM t", "42883").await;
    expect_error(&client, "SELECT double_it(true)", "42883").await;
    // OR REPLACE, and one module holding the export under another name, as a window function.
    client
        .batch_execute(&format!(
            "CREATE OR REPLACE FUNCTION double_it(float8) RETURNS float8 LANGUAGE wasm AS '{double}' WITH (timeout_ms = 200, memory_limit = '8MB');
             CREATE FUNCTION doubled_all(float8) RETURNS float8 LANGUAGE wasm WINDOW AS '{double}', 'double_it';"
        ))
        .await
        .expect("replace");
    let row = other
        .query_one(
            "SELECT sum(d) FROM (SELECT doubled_all(x) OVER () AS d FROM t) s",
            &[],
        )
        .await
        .expect("window");
    assert_eq!(row.get::<_, f64>(0), 14.0);

    if psql_available("functions_are_catalog_objects") {
        let out = Command::new("psql")
            .args(["-X", "-A", "-F", "|", "-h", "127.0.0.1", "-p"])
            .arg(server.addr.port().to_string())
            .args(["-U", "postgres", "-d", "postgres", "-c", "\\df"])
            .output()
            .expect("psql");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("public|double_it|float8|float8|func"),
            "{text}"
        );
        assert!(
            text.contains("public|doubled_all|float8|float8|window"),
            "{text}"
        );
    }
    drop((client, other));
    server.shutdown().await.expect("stop");

    // After a restart: still there, compiled again on first use.
    let server = start_server(dir.path()).await;
    let client = connect(&server).await;
    let row = client
        .query_one("SELECT sum(double_it(x)) FROM t", &[])
        .await
        .expect("after restart");
    assert_eq!(row.get::<_, f64>(0), 14.0);
    let names: Vec<String> = client
        .query(
            "SELECT proname FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n \
             ON n.oid = p.pronamespace WHERE n.nspname = 'public' ORDER BY proname",
            &[],
        )
        .await
        .expect("pg_proc")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names, ["double_it", "doubled_all"]);
    expect_error(
        &client,
        &format!(
            "CREATE OR REPLACE FUNCTION double_it(float8) RETURNS int8 LANGUAGE wasm AS '{}'",
            wat("double")
        ),
        "42P13",
    )
    .await;
    expect_error(&client, "DROP FUNCTION double_it(text)", "42883").await;
    expect_error(
        &client,
        "DROP FUNCTION doubled_all, no_such_function",
        "42883",
    )
    .await;
    client
        .query_one(
            "SELECT sum(d) FROM (SELECT doubled_all(x) OVER () AS d FROM t) s",
            &[],
        )
        .await
        .expect("a failed DROP drops nothing");
    client
        .batch_execute("DROP FUNCTION double_it(float8)")
        .await
        .expect("drop");
    expect_error(&client, "SELECT double_it(x) FROM t", "42883").await;
    expect_error(&client, "DROP FUNCTION double_it", "42883").await;
    client
        .batch_execute("DROP FUNCTION IF EXISTS double_it; DROP FUNCTION doubled_all")
        .await
        .expect("drop if exists");
    let modules = std::fs::read_dir(dir.path().join("functions"))
        .expect("dir")
        .count();
    assert_eq!(modules, 0, "dropped modules are removed");
}

/// One hostile module: where it must fail (CREATE or call) and with what.
struct Evil {
    fixture: &'static str,
    signature: &'static str,
    options: &'static str,
    call: &'static str,
    create_error: Option<&'static str>,
    call_error: Option<&'static str>,
}

/// A user function declared IMMUTABLE in the WHERE of a vector search is
/// evaluated before the top k, on both filtered branches of the search (exact
/// over few matching rows, ANN with a prefilter over many), and answers as the
/// same filter written with built-in operators. Declared VOLATILE (the
/// default) it is refused, never applied after the top k. The declaration is
/// kept in the catalog (`pg_proc.provolatile`) across a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immutable_function_filters_before_the_top_k() {
    use crate::common::{copy_payload, copy_text, random_vectors, vector_text};
    let dir = TempDir::new("udf-immutable");
    let server = start_server(dir.path()).await;
    let c = connect(&server).await;
    let double = wat("double");
    let vectors = random_vectors(30_000, 8, 11);
    c.batch_execute(&format!(
        "CREATE TABLE docs (id bigint, bucket bigint, embedding vector(8));
         CREATE FUNCTION double_it(float8) RETURNS float8 IMMUTABLE LANGUAGE wasm AS '{double}';
         CREATE FUNCTION double_v(float8) RETURNS float8 LANGUAGE wasm AS '{double}', 'double_it';"
    ))
    .await
    .expect("create");
    copy_text(&c, "COPY docs FROM STDIN", copy_payload(&vectors)).await;
    let q = random_vectors(1, 8, 99).remove(0);
    let qt = vector_text(&q);

    check_filters(&c, &qt).await;
    // Exact: the rows of bucket 0 by distance, as brute force ranks them.
    let mut exact: Vec<(f32, i64)> = vectors
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 100 == 0)
        .map(|(i, v)| {
            (
                v.iter().zip(&q).map(|(a, b)| (a - b) * (a - b)).sum(),
                i as i64,
            )
        })
        .collect();
    exact.sort_by(|a, b| a.0.total_cmp(&b.0));
    let got = pairs(
        c.query(forms(&qt, "double_it(bucket) < 2")[1].as_str(), &[])
            .await
            .expect("q"),
    );
    let want: Vec<(i64, i64)> = exact.iter().take(10).map(|&(_, i)| (i, 0)).collect();
    assert_eq!(got, want);

    c.batch_execute(
        "CREATE INDEX docs_ivf ON docs USING ivf_flat (embedding) WITH (num_partitions = 4);
         SET quiver.nprobes = 4",
    )
    .await
    .expect("index");
    check_filters(&c, &qt).await;

    // Volatile: refused rather than post-filtered.
    for sql in forms(&qt, "double_v(bucket) < 2") {
        let msg = expect_error(&c, &sql, "0A000").await;
        assert!(msg.contains("IMMUTABLE"), "{msg}");
    }
    let volatility = |rows: Vec<tokio_postgres::Row>| -> Vec<(String, String)> {
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    };
    let pg_proc = "SELECT proname::text, provolatile::text FROM pg_catalog.pg_proc \
                   WHERE proname LIKE 'double%' ORDER BY 1";
    let declared = vec![
        ("double_it".into(), "i".into()),
        ("double_v".into(), "v".into()),
    ];
    assert_eq!(
        volatility(c.query(pg_proc, &[]).await.expect("pg_proc")),
        declared
    );
    drop(c);
    server.shutdown().await.expect("stop");
    let server = start_server(dir.path()).await;
    let c = connect(&server).await;
    assert_eq!(
        volatility(c.query(pg_proc, &[]).await.expect("pg_proc")),
        declared
    );
    c.batch_execute("SET quiver.nprobes = 4")
        .await
        .expect("set");
    check_filters(&c, &qt).await;
}

fn pairs(rows: Vec<tokio_postgres::Row>) -> Vec<(i64, i64)> {
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// The two query forms of a filtered top-10 search on `docs`.
fn forms(qt: &str, filter: &str) -> [String; 2] {
    [
        format!(
            "SELECT id, bucket FROM vector_search('docs', 'embedding', '{qt}', 10) \
             WHERE {filter} ORDER BY _distance, id"
        ),
        format!(
            "SELECT id, bucket FROM docs WHERE {filter} ORDER BY embedding <-> '{qt}' LIMIT 10"
        ),
    ]
}

/// `double_it(bucket)` filters answer as the same filters in built-in
/// operators, inside the search (filter-first in EXPLAIN). bucket = id % 100:
/// `< 2` keeps bucket 0 (300 rows: the exact branch), `< 160` buckets 0..79
/// (24,000 rows: the ANN prefilter branch once the table is indexed).
async fn check_filters(c: &tokio_postgres::Client, qt: &str) {
    for (udf, native, keep) in [
        ("double_it(bucket) < 2", "bucket * 2 < 2", 1),
        ("double_it(bucket) < 160", "bucket * 2 < 160", 80),
    ] {
        for (with_udf, with_native) in forms(qt, udf).iter().zip(forms(qt, native)) {
            let got = pairs(c.query(with_udf.as_str(), &[]).await.expect(with_udf));
            assert_eq!(got.len(), 10, "{with_udf}: {got:?}");
            assert!(got.iter().all(|(_, b)| *b < keep), "{with_udf}: {got:?}");
            let want = pairs(c.query(with_native.as_str(), &[]).await.expect("native"));
            assert_eq!(got, want, "{with_udf}");
            let plan = crate::common::explain(c, &format!("EXPLAIN {with_udf}")).await;
            assert!(
                plan.contains("filter=[double_it(") && plan.contains("(filter-first)"),
                "{plan}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evil_guests_fail_cleanly() {
    let dir = TempDir::new("udf-evil");
    let server = start_server(dir.path()).await;
    let client = connect(&server).await;
    client
        .batch_execute(&format!(
            "CREATE TABLE t (x BIGINT);
             INSERT INTO t VALUES (1), (2), (3);
             CREATE FUNCTION double_it(float8) RETURNS float8 LANGUAGE wasm AS '{}';",
            wat("double")
        ))
        .await
        .expect("setup");
    let corpus = [
        Evil {
            fixture: "loop",
            signature: "spin(int8) RETURNS int8",
            options: "WITH (timeout_ms = 100)",
            call: "SELECT spin(x) FROM t",
            create_error: None,
            call_error: Some("57014"),
        },
        Evil {
            fixture: "grow",
            signature: "grow(int8) RETURNS int8",
            options: "",
            call: "SELECT grow(x) FROM t",
            create_error: None,
            call_error: Some("53200"),
        },
        Evil {
            fixture: "recurse",
            signature: "recurse(int8) RETURNS int8",
            options: "",
            call: "SELECT recurse(x) FROM t",
            create_error: None,
            call_error: Some("54001"),
        },
        Evil {
            fixture: "huge_output",
            signature: "huge(int8) RETURNS float8",
            options: "",
            call: "SELECT huge(x) FROM t",
            create_error: None,
            call_error: Some("39000"),
        },
        Evil {
            fixture: "oob_pointer",
            signature: "oob(int8) RETURNS float8",
            options: "",
            call: "SELECT oob(x) FROM t",
            create_error: None,
            call_error: Some("39000"),
        },
        Evil {
            fixture: "bad_alloc",
            signature: "bad_alloc(int8) RETURNS float8",
            options: "",
            call: "SELECT bad_alloc(x) FROM t",
            create_error: None,
            call_error: Some("39000"),
        },
        Evil {
            fixture: "table_growth",
            signature: "grow_table(int8) RETURNS int8",
            options: "",
            call: "SELECT grow_table(x) FROM t",
            create_error: None,
            call_error: Some("53200"),
        },
        Evil {
            fixture: "trap",
            signature: "boom(int8) RETURNS int8",
            options: "",
            call: "SELECT boom(x) FROM t",
            create_error: None,
            call_error: Some("38000"),
        },
        Evil {
            fixture: "wrong_type",
            signature: "wrong_type(int8) RETURNS float8",
            options: "",
            call: "SELECT wrong_type(x) FROM t",
            create_error: None,
            call_error: Some("39000"),
        },
        Evil {
            fixture: "guest_error",
            signature: "refuse(int8) RETURNS float8",
            options: "",
            call: "SELECT refuse(x) FROM t",
            create_error: None,
            call_error: Some("38000"),
        },
        Evil {
            fixture: "import",
            signature: "sneaky(int8) RETURNS int8",
            options: "",
            call: "",
            create_error: Some("42P13"),
            call_error: None,
        },
        Evil {
            fixture: "missing_export",
            signature: "incomplete(int8) RETURNS int8",
            options: "",
            call: "",
            create_error: Some("42P13"),
            call_error: None,
        },
        Evil {
            fixture: "start_loop",
            signature: "never(int8) RETURNS int8",
            options: "WITH (timeout_ms = 50)",
            call: "",
            create_error: Some("42P13"),
            call_error: None,
        },
        Evil {
            fixture: "big_memory",
            signature: "big(int8) RETURNS int8",
            options: "",
            call: "",
            create_error: Some("42P13"),
            call_error: None,
        },
    ];
    for evil in &corpus {
        eprintln!("{}:", evil.fixture);
        let create = format!(
            "CREATE FUNCTION {} LANGUAGE wasm AS '{}' {}",
            evil.signature,
            wat(evil.fixture),
            evil.options
        );
        if let Some(code) = evil.create_error {
            expect_error(&client, &create, code).await;
        } else {
            client.batch_execute(&create).await.expect(evil.fixture);
            let started = Instant::now();
            let msg = expect_error(&client, evil.call, evil.call_error.unwrap_or("?")).await;
            let elapsed = started.elapsed();
            if evil.fixture == "loop" {
                eprintln!("  the 100 ms loop was stopped after {elapsed:?} (query included)");
                assert!(elapsed.as_millis() < 1000, "{elapsed:?}");
                assert!(msg.contains("100 ms"), "{msg}");
            }
            if evil.fixture == "guest_error" {
                assert!(
                    msg.ends_with("refused: this function accepts nothing"),
                    "{msg}"
                );
            }
        }
        // The server and the connection keep serving, and a good function still works.
        let row = client
            .query_one("SELECT sum(double_it(x)) FROM t", &[])
            .await
            .unwrap_or_else(|e| panic!("after {}: {e:?}", evil.fixture));
        assert_eq!(row.get::<_, f64>(0), 12.0);
    }
    // /metrics counts the calls by outcome and the limits hit, per function.
    let text = crate::metrics::scrape(&server).await;
    let value = |series: &str| crate::metrics::value(&text, series);
    for (function, limit) in [
        ("spin", "time"),
        ("grow", "memory"),
        ("recurse", "stack"),
        ("grow_table", "memory"),
    ] {
        let series =
            format!(r#"quiver_wasm_limit_hits_total{{function="{function}",limit="{limit}"}}"#);
        assert_eq!(value(&series), 1.0, "{series} in\n{text}");
    }
    assert_eq!(
        value(r#"quiver_wasm_calls_total{function="boom",outcome="error"}"#),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(r#"quiver_wasm_calls_total{function="double_it",outcome="error"}"#),
        0.0
    );
    let good = value(r#"quiver_wasm_calls_total{function="double_it",outcome="ok"}"#);
    assert!(good >= corpus.len() as f64, "{good} calls of double_it");
    assert_eq!(
        value(r#"quiver_wasm_call_seconds_count{function="double_it"}"#),
        good
    );
    assert!(!text.contains(r#"function="boom",limit="#), "{text}");
    // A dropped function's series go.
    client
        .batch_execute("DROP FUNCTION spin")
        .await
        .expect("drop");
    let text = crate::metrics::scrape(&server).await;
    assert!(!text.contains(r#"function="spin""#), "{text}");
    // A scalar result the host would have to repeat past the memory limit.
    client
        .batch_execute(&format!(
            "CREATE TABLE many (x BIGINT);
             INSERT INTO many SELECT value FROM generate_series(1, 8192);
             CREATE FUNCTION bomb(int8) RETURNS vector LANGUAGE wasm AS '{}'",
            wat("scalar_bomb")
        ))
        .await
        .expect("bomb");
    expect_error(&client, "SELECT count(bomb(x)) FROM many", "53200").await;
    // A name that looks like a path stays a name: modules are stored by OID.
    client
        .batch_execute(&format!(
            "CREATE FUNCTION \"../escape\"(float8) RETURNS float8 LANGUAGE wasm AS '{}', 'double_it'",
            wat("double")
        ))
        .await
        .expect("odd name");
    let row = client
        .query_one("SELECT \"../escape\"(1.5)", &[])
        .await
        .expect("odd name call");
    assert_eq!(row.get::<_, f64>(0), 3.0);
    for f in std::fs::read_dir(dir.path().join("functions")).expect("functions dir") {
        let name = f.expect("entry").file_name().into_string().expect("utf-8");
        assert!(name.starts_with(|c: char| c.is_ascii_digit()), "{name}");
    }
    assert!(!dir.path().join("escape").exists());
    // Not WebAssembly at all, binary or text.
    expect_error(
        &client,
        "CREATE FUNCTION f(int8) RETURNS int8 LANGUAGE wasm AS 'hello world'",
        "42P13",
    )
    .await;
    expect_error(
        &client,
        "CREATE FUNCTION f(int8) RETURNS int8 LANGUAGE wasm AS '\\x0061736d01000000ff'",
        "42P13",
    )
    .await;
    expect_error(
        &client,
        "CREATE FUNCTION f(int8) RETURNS int8 LANGUAGE wasm AS '\\x0061736'",
        "22P02",
    )
    .await;
    expect_error(
        &client,
        "CREATE FUNCTION f(int8) RETURNS int8 LANGUAGE wasm AS '(module (func $f))'",
        "42P13",
    )
    .await;
    // The same big module is fine under a higher memory limit.
    client
        .batch_execute(&format!(
            "CREATE FUNCTION big(int8) RETURNS int8 LANGUAGE wasm AS '{}' WITH (memory_limit = '256MB')",
            wat("big_memory")
        ))
        .await
        .expect("big with a higher limit");
    let pages: i64 = client
        .query_one("SELECT big(1)", &[])
        .await
        .expect("big")
        .get(0);
    assert_eq!(pages, 2000);
    // No state survives between calls: each call starts from a fresh instance.
    client
        .batch_execute(&format!(
            "CREATE FUNCTION calls_seen(int8) RETURNS int8 LANGUAGE wasm AS '{}'",
            wat("counter")
        ))
        .await
        .expect("counter");
    let other = connect(&server).await;
    for c in [&client, &other, &client] {
        for r in c
            .query("SELECT calls_seen(x) FROM t", &[])
            .await
            .expect("counter call")
        {
            assert_eq!(r.get::<_, i64>(0), 1);
        }
    }
    // Many calls at once from several connections.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let c = connect(&server).await;
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                let row = c
                    .query_one("SELECT sum(double_it(x)) FROM t", &[])
                    .await
                    .expect("parallel");
                assert_eq!(row.get::<_, f64>(0), 12.0);
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
}
