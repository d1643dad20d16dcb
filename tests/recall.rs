//! vector_search against exact brute force: flat search must match exactly;
//! indexed search's recall@10 is reported (and must stay high).

use crate::common::{
    TempDir, Vector, connect, copy_payload, copy_text, random_vectors, start_server,
};

fn l2(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| ((*x - *y) as f64).powi(2))
        .sum::<f64>()
        .sqrt()
}

fn brute_force(
    base: &[Vec<f32>],
    q: &[f32],
    k: usize,
    keep: impl Fn(usize) -> bool,
) -> Vec<(i64, f64)> {
    let mut d: Vec<(i64, f64)> = base
        .iter()
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .map(|(i, v)| (i as i64, l2(v, q)))
        .collect();
    d.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    d.truncate(k);
    d
}

/// `bucket < 3` keeps ids with `id % 100 < 3`: the search must return the exact top 10 of those.
async fn check_filtered(
    client: &tokio_postgres::Client,
    filtered: &tokio_postgres::Statement,
    base: &[Vec<f32>],
    q: &[f32],
) {
    let want: Vec<i64> = brute_force(base, q, 10, |i| i % 100 < 3)
        .iter()
        .map(|w| w.0)
        .collect();
    let got: Vec<i64> = client
        .query(filtered, &[&Vector(q.to_vec())])
        .await
        .expect("filtered")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(got, want, "filter-first search");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flat_matches_brute_force_and_index_recall_is_high() {
    let dir = TempDir::new("recall");
    let server = start_server(dir.path()).await;
    let client = connect(&server).await;
    let (n, dim, k) = (3000, 32, 10);
    let base = random_vectors(n, dim, 11);
    let queries = random_vectors(40, dim, 99);
    client
        .batch_execute(&format!(
            "CREATE TABLE r (id BIGINT, bucket INT, embedding VECTOR({dim}))"
        ))
        .await
        .expect("create");
    copy_text(&client, "COPY r FROM STDIN", copy_payload(&base)).await;

    let search = client
        .prepare("SELECT id, _distance FROM vector_search('r', 'embedding', $1::vector, 10)")
        .await
        .expect("prepare");
    let filtered = client
        .prepare("SELECT id FROM vector_search('r', 'embedding', $1::vector, 10) WHERE bucket < 3")
        .await
        .expect("prepare");
    for q in &queries {
        let want = brute_force(&base, q, k, |_| true);
        let got = client
            .query(&search, &[&Vector(q.to_vec())])
            .await
            .expect("flat");
        let got: Vec<(i64, f64)> = got.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(
            got.iter().map(|g| g.0).collect::<Vec<_>>(),
            want.iter().map(|w| w.0).collect::<Vec<_>>()
        );
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g.1 - w.1).abs() < 1e-4,
                "distance {} vs exact {}",
                g.1,
                w.1
            );
        }
        check_filtered(&client, &filtered, &base, q).await;
    }

    client
        .batch_execute("CREATE INDEX r_idx ON r USING ivf_hnsw_sq (embedding) WITH (metric = 'l2', num_partitions = 4); SET quiver.nprobes = 4; SET quiver.ef = 100")
        .await
        .expect("index");
    let search = client
        .prepare("SELECT id FROM vector_search('r', 'embedding', $1::vector, 10)")
        .await
        .expect("prepare");
    let mut hits = 0;
    for q in &queries {
        let want: Vec<i64> = brute_force(&base, q, k, |_| true)
            .iter()
            .map(|w| w.0)
            .collect();
        let got: Vec<i64> = client
            .query(&search, &[&Vector(q.to_vec())])
            .await
            .expect("ann")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(got.len(), k);
        hits += got.iter().filter(|g| want.contains(g)).count();
    }
    let recall = hits as f64 / (queries.len() * k) as f64;
    eprintln!(
        "ivf_hnsw_sq recall@10 on {n} random {dim}-d vectors (nprobes=4, ef=100): {recall:.3}"
    );
    assert!(recall >= 0.85, "recall@10 {recall}");
    // The filtered search stays exact (few rows pass): filter-first, not post-filtered.
    for q in queries.iter().take(10) {
        check_filtered(&client, &filtered, &base, q).await;
    }
    server.shutdown().await.expect("shutdown");
}
