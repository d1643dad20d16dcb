//! Transaction blocks: a block's writes are its own until COMMIT, undone by
//! ROLLBACK (also to a savepoint and after a crash), atomic for readers, and
//! a failed block refuses statements until it ends; a CancelRequest or
//! `statement_timeout` stops a running statement.

use std::time::Duration;

use crate::common::{
    TempDir, Vector, client, connect, copy_text, count, free_port, spawn_server, start_server,
};

async fn ids(c: &tokio_postgres::Client, sql: &str) -> Vec<i64> {
    let mut v: Vec<i64> = c
        .query(sql, &[])
        .await
        .expect(sql)
        .iter()
        .map(|r| r.get(0))
        .collect();
    v.sort_unstable();
    v
}

fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.code().code().to_string())
        .unwrap_or_else(|| format!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_sees_its_writes_others_see_them_at_commit() {
    let dir = TempDir::new("txn");
    let server = start_server(dir.path()).await;
    let a = connect(&server).await;
    let b = connect(&server).await;
    b.batch_execute(
        "CREATE TABLE t (id BIGINT, tag TEXT, e VECTOR(2));
         INSERT INTO t VALUES (1, 'x', '[1,1]'), (2, 'x', '[2,2]')",
    )
    .await
    .expect("setup");

    // ROLLBACK undoes inserts, deletes and updates; the block read them all.
    a.batch_execute(
        "BEGIN;
         INSERT INTO t VALUES (3, 'x', '[3,3]');
         DELETE FROM t WHERE id = 1;
         UPDATE t SET tag = 'y' WHERE id = 2",
    )
    .await
    .expect("block");
    assert_eq!(ids(&a, "SELECT id FROM t").await, vec![2, 3]);
    assert_eq!(ids(&a, "SELECT id FROM t WHERE tag = 'y'").await, vec![2]);
    // Its searches read its own version: exact and through the pgvector form.
    let near = a
        .query_one(
            "SELECT id FROM t ORDER BY e <-> $1 LIMIT 1",
            &[&Vector(vec![3.0, 3.0])],
        )
        .await
        .expect("search in block");
    assert_eq!(near.get::<_, i64>(0), 3);
    assert_eq!(
        ids(
            &a,
            "SELECT id FROM vector_search('t', 'e', '[1,1]'::vector, 5)"
        )
        .await,
        vec![2, 3]
    );
    // Another session sees none of it, and its one-row INSERTs are not blocked.
    assert_eq!(ids(&b, "SELECT id FROM t").await, vec![1, 2]);
    assert_eq!(
        ids(&b, "SELECT id FROM t WHERE tag = 'y'").await,
        Vec::<i64>::new()
    );
    b.batch_execute("INSERT INTO t VALUES (10, 'b', '[9,9]')")
        .await
        .expect("a concurrent one-row insert");
    // Read committed: the block sees rows others committed meanwhile.
    assert_eq!(ids(&a, "SELECT id FROM t").await, vec![2, 3, 10]);
    a.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(ids(&a, "SELECT id FROM t").await, vec![1, 2, 10]);
    assert_eq!(
        ids(&b, "SELECT id FROM t WHERE tag = 'x'").await,
        vec![1, 2]
    );

    // COMMIT publishes every statement of the block at once.
    a.batch_execute(
        "BEGIN;
         INSERT INTO t VALUES (4, 'x', '[4,4]');
         INSERT INTO t VALUES (5, 'x', '[5,5]')",
    )
    .await
    .expect("block 2");
    copy_text(&a, "COPY t (id, tag, e) FROM STDIN", "6\tc\t[6,6]\n".into()).await;
    // One-row INSERTs wait to be written until the block reads the table
    // (prepared, as drivers send them).
    let insert = a
        .prepare("INSERT INTO t VALUES ($1, 'p', $2)")
        .await
        .expect("prepare");
    for id in 20..25i64 {
        a.execute(&insert, &[&id, &Vector(vec![id as f32, 0.0])])
            .await
            .expect("insert in block");
    }
    let near = a
        .query_one(
            "SELECT id FROM t ORDER BY e <-> $1 LIMIT 1",
            &[&Vector(vec![24.0, 0.0])],
        )
        .await
        .expect("search sees the block's buffered rows");
    assert_eq!(near.get::<_, i64>(0), 24);
    assert_eq!(ids(&b, "SELECT id FROM t").await, vec![1, 2, 10]);
    a.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(
        ids(&b, "SELECT id FROM t").await,
        vec![1, 2, 4, 5, 6, 10, 20, 21, 22, 23, 24]
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savepoints_and_the_failed_state() {
    let dir = TempDir::new("txn-savepoint");
    let server = start_server(dir.path()).await;
    let a = connect(&server).await;
    a.batch_execute("CREATE TABLE s (id BIGINT, e VECTOR(2))")
        .await
        .expect("create");
    a.batch_execute(
        "BEGIN;
         INSERT INTO s VALUES (1, '[1,1]');
         SAVEPOINT one;
         INSERT INTO s VALUES (2, '[2,2]');
         SAVEPOINT two;
         INSERT INTO s VALUES (3, '[3,3]')",
    )
    .await
    .expect("block");
    // An error fails the block: every statement but ROLLBACK / COMMIT is refused.
    let err = a
        .batch_execute("SELECT * FROM missing")
        .await
        .expect_err("an error");
    assert_eq!(sqlstate(&err), "42P01");
    let err = a.batch_execute("SELECT 1").await.expect_err("an error");
    assert_eq!(sqlstate(&err), "25P02");
    // ROLLBACK TO a savepoint undoes what followed it and ends the failure.
    a.batch_execute("ROLLBACK TO SAVEPOINT two")
        .await
        .expect("rollback to two");
    assert_eq!(ids(&a, "SELECT id FROM s").await, vec![1, 2]);
    a.batch_execute("ROLLBACK TO one")
        .await
        .expect("rollback to one");
    assert_eq!(ids(&a, "SELECT id FROM s").await, vec![1]);
    let err = a
        .batch_execute("RELEASE SAVEPOINT two")
        .await
        .expect_err("an error");
    assert_eq!(sqlstate(&err), "3B001");
    a.batch_execute("ROLLBACK")
        .await
        .expect("end the failed block");
    a.batch_execute("BEGIN; INSERT INTO s VALUES (7, '[7,7]'); SAVEPOINT p; RELEASE SAVEPOINT p")
        .await
        .expect("release");
    // COMMIT of a failed block rolls back (PostgreSQL's tag: ROLLBACK).
    let _ = a
        .batch_execute("SELECT nope FROM s")
        .await
        .expect_err("an error");
    let msgs = a
        .simple_query("COMMIT")
        .await
        .expect("commit a failed block");
    let tag = msgs.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::CommandComplete(_) => Some(()),
        _ => None,
    });
    assert!(tag.is_some());
    assert_eq!(count(&a, "s").await, 0);
    // Outside a block: a savepoint is an error; schema statements in a block
    // that wrote are refused instead of waiting on the block's own table.
    let err = a.batch_execute("SAVEPOINT x").await.expect_err("an error");
    assert_eq!(sqlstate(&err), "25P01");
    a.batch_execute("BEGIN; INSERT INTO s VALUES (8, '[8,8]')")
        .await
        .expect("block");
    let err = a
        .batch_execute("CREATE INDEX ON s USING ivf_flat (e)")
        .await
        .expect_err("an error");
    assert_eq!(sqlstate(&err), "25001");
    a.batch_execute("ROLLBACK").await.expect("rollback");
    // A dropped connection rolls its block back.
    let c = connect(&server).await;
    c.batch_execute("BEGIN; INSERT INTO s VALUES (9, '[9,9]')")
        .await
        .expect("block");
    drop(c);
    let other = connect(&server).await;
    let mut waited = 0;
    // The rollback runs in the background once the connection is gone;
    // until then a write to the table waits for it.
    while waited < 50 {
        if other
            .batch_execute("DELETE FROM s WHERE id = -1")
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    assert_eq!(count(&other, "s").await, 0);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_of_a_held_table_wait_and_cycles_fail() {
    let dir = TempDir::new("txn-lock");
    let server = start_server(dir.path()).await;
    let a = connect(&server).await;
    let b = connect(&server).await;
    a.batch_execute(
        "CREATE TABLE p (id BIGINT); CREATE TABLE q (id BIGINT);
         INSERT INTO p VALUES (1); INSERT INTO q VALUES (1)",
    )
    .await
    .expect("setup");
    a.batch_execute("BEGIN; DELETE FROM p WHERE id = 1")
        .await
        .expect("a holds p");
    // b's DELETE on p waits for a's block, then sees its outcome.
    let waiter = tokio::spawn(async move {
        b.batch_execute("DELETE FROM p WHERE id = 2")
            .await
            .expect("b");
        b
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "a write did not wait for the block");
    a.batch_execute("COMMIT").await.expect("commit");
    let b = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("b ran after the commit")
        .expect("b");
    assert_eq!(count(&b, "p").await, 0);
    // Two blocks taking p and q in opposite orders: one of them fails (40P01).
    a.batch_execute("BEGIN; INSERT INTO p VALUES (5)")
        .await
        .expect("a holds p");
    b.batch_execute("BEGIN; INSERT INTO q VALUES (5)")
        .await
        .expect("b holds q");
    let a_task = tokio::spawn(async move {
        let r = a.batch_execute("INSERT INTO q VALUES (6)").await;
        (a, r)
    });
    let rb = b.batch_execute("INSERT INTO p VALUES (6)").await;
    let (a, ra) = a_task.await.expect("a");
    let states: Vec<String> = [&ra, &rb]
        .iter()
        .filter_map(|r| r.as_ref().err().map(sqlstate))
        .collect();
    assert!(states.contains(&"40P01".to_string()), "{states:?}");
    let _ = a.batch_execute("ROLLBACK").await;
    let _ = b.batch_execute("ROLLBACK").await;
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_a_block_loses_the_block_only() {
    let dir = TempDir::new("txn-crash");
    let port = free_port();
    let mut server = spawn_server(dir.path(), port).await;
    let c = client(port).await;
    c.batch_execute(
        "CREATE TABLE k (id BIGINT, e VECTOR(2));
         INSERT INTO k VALUES (1, '[1,1]'), (2, '[2,2]')",
    )
    .await
    .expect("setup");
    c.batch_execute("BEGIN; INSERT INTO k VALUES (3, '[3,3]'); DELETE FROM k WHERE id = 1")
        .await
        .expect("block");
    assert_eq!(ids(&c, "SELECT id FROM k").await, vec![2, 3]);
    server.start_kill().expect("kill -9");
    let _ = server.wait().await;

    let mut server = spawn_server(dir.path(), port).await;
    let c = client(port).await;
    assert_eq!(ids(&c, "SELECT id FROM k").await, vec![1, 2]);
    c.batch_execute("INSERT INTO k VALUES (4, '[4,4]')")
        .await
        .expect("write after recovery");
    assert_eq!(ids(&c, "SELECT id FROM k").await, vec![1, 2, 4]);
    server.start_kill().expect("stop");
    let _ = server.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advisory_locks_wait_and_end_with_their_session_or_block() {
    let dir = TempDir::new("advisory");
    let server = start_server(dir.path()).await;
    let a = connect(&server).await;
    let b = connect(&server).await;
    let try_lock = async |c: &tokio_postgres::Client, sql: &str| -> bool {
        c.query_one(sql, &[]).await.expect(sql).get(0)
    };
    a.batch_execute("SELECT pg_advisory_lock(42)")
        .await
        .expect("lock");
    assert!(!try_lock(&b, "SELECT pg_try_advisory_lock(42)").await);
    // b waits until a unlocks.
    let waiter = tokio::spawn(async move {
        b.batch_execute("SELECT pg_advisory_lock(42)")
            .await
            .expect("b locks");
        b
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "b did not wait");
    assert!(try_lock(&a, "SELECT pg_advisory_unlock(42)").await);
    let b = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("b got the lock")
        .expect("b");
    assert!(
        !try_lock(&a, "SELECT pg_advisory_unlock(42)").await,
        "a holds it no more"
    );
    // A session's locks end with it.
    drop(b);
    let mut free = false;
    for _ in 0..50 {
        if try_lock(&a, "SELECT pg_try_advisory_lock(42)").await {
            free = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(free, "a closed session's lock was kept");
    // A transaction-level lock ends with its block.
    let c = connect(&server).await;
    c.batch_execute("BEGIN; SELECT pg_advisory_xact_lock(7, 1)")
        .await
        .expect("xact lock");
    assert!(!try_lock(&a, "SELECT pg_try_advisory_lock(7, 1)").await);
    c.batch_execute("COMMIT").await.expect("commit");
    assert!(try_lock(&a, "SELECT pg_try_advisory_lock(7, 1)").await);
    server.shutdown().await.expect("shutdown");
}

/// A CancelRequest stops the connection's running statement with 57014 and
/// the connection goes on, over both protocols; so does `statement_timeout`
/// — also for work that holds the statement's task in one poll: correlated
/// subqueries run per outer value (subplans).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_timeout_stop_running_statements() {
    let dir = TempDir::new("cancel");
    let server = start_server(dir.path()).await;
    let c = connect(&server).await;
    c.batch_execute("CREATE TABLE small (id bigint); INSERT INTO small VALUES (1), (2), (3)")
        .await
        .expect("setup");
    // 9,999 subplan runs: seconds of work on any build.
    let subplans = "SELECT sum(CASE WHEN g > 0 THEN \
        (SELECT count(*) FROM small WHERE small.id < g) END) \
        FROM generate_series(1, 9999) AS s(g)";
    // Seconds of work too, computed as its rows are fetched.
    let endless = "SELECT count(*) FROM generate_series(1, 2000000000) WHERE random() < 2";
    for sql in [endless, subplans] {
        for simple in [true, false] {
            let token = c.cancel_token();
            let canceller = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                token.cancel_query(tokio_postgres::NoTls).await
            });
            let started = std::time::Instant::now();
            let err = match simple {
                true => c.simple_query(sql).await.map(|_| ()),
                false => c.query(sql, &[]).await.map(|_| ()),
            }
            .expect_err(sql);
            assert_eq!(sqlstate(&err), "57014", "{sql} (simple: {simple}): {err}");
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{sql}: cancelled after {:?}",
                started.elapsed()
            );
            canceller.await.expect("join").expect("cancel request");
            assert_eq!(count(&c, "small").await, 3, "the connection goes on");
        }
    }
    c.batch_execute("SET statement_timeout = '100ms'")
        .await
        .expect("set");
    for simple in [true, false] {
        let err = match simple {
            true => c.simple_query(subplans).await.map(|_| ()),
            false => c.query(subplans, &[]).await.map(|_| ()),
        }
        .expect_err("timeout");
        assert_eq!(sqlstate(&err), "57014", "{err}");
        assert!(format!("{err:?}").contains("statement timeout"), "{err:?}");
    }
    c.batch_execute("SET statement_timeout = 0")
        .await
        .expect("reset");
    // Without a limit the same subplans answer: ids below g, summed.
    let r = c
        .query_one(
            "SELECT sum(CASE WHEN g > 0 THEN (SELECT count(*) FROM small WHERE small.id < g) END)::bigint \
             FROM generate_series(1, 100) AS s(g)",
            &[],
        )
        .await
        .expect("subplans");
    assert_eq!(r.get::<_, i64>(0), 1 + 2 + 3 * 97);
}
