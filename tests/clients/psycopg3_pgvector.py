"""psycopg 3 with pgvector-python's register_vector: text and binary
parameters and results, binary and text COPY, server-side prepared
statements, errors that leave the connection usable."""
import datetime

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from common import DSN, check, nearest, vectors

base = vectors(200, 8, 1)
with psycopg.connect(DSN, autocommit=True) as conn:
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    register_vector(conn)
    conn.execute(
        "CREATE TABLE items (id bigint, category text, score float8, ok boolean, "
        "added timestamp, embedding vector(8))"
    )
    # Binary COPY (what pgvector-python's bulk-loading example does).
    with conn.cursor().copy(
        "COPY items (id, category, score, ok, added, embedding) FROM STDIN WITH (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["int8", "text", "float8", "bool", "timestamp", "vector"])
        for i, v in enumerate(base[:100]):
            copy.write_row([i, f"c{i % 4}", i / 2, i % 2 == 0, datetime.datetime(2026, 1, 1 + i % 28), v])
    # Text COPY of the rest.
    with conn.cursor().copy("COPY items (id, category, score, ok, added, embedding) FROM STDIN") as copy:
        for i, v in enumerate(base[100:], start=100):
            copy.write_row([i, f"c{i % 4}", i / 2, i % 2 == 0, datetime.datetime(2026, 1, 1 + i % 28), v])
    check(conn.execute("SELECT count(*) FROM items").fetchone()[0] == 200, "200 rows copied")
    # Parameters: numpy vectors through the registered dumper, executemany.
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO items (id, category, embedding) VALUES (%s, %s, %s)",
            [(1000 + i, "extra", np.full(8, 50.0 + i, dtype=np.float32)) for i in range(3)],
        )
    q = base[7]
    want = nearest(base, q, 5)
    for binary in (False, True):
        cur = conn.cursor(binary=binary)
        rows = cur.execute(
            "SELECT id, embedding, category, score, ok, added FROM items "
            "ORDER BY embedding <-> %s LIMIT 5",
            (q,),
        ).fetchall()
        check([r[0] for r in rows] == want, f"binary={binary}: {[r[0] for r in rows]} != {want}")
        check(isinstance(rows[0][1], np.ndarray), f"binary={binary}: vector is {type(rows[0][1])}")
        check(np.array_equal(rows[0][1], base[want[0]]), f"binary={binary}: vector round trip")
        r = rows[0]
        check(r[2] == f"c{want[0] % 4}" and r[3] == want[0] / 2 and r[4] == (want[0] % 2 == 0),
              f"binary={binary}: scalar columns {r}")
        check(r[5] == datetime.datetime(2026, 1, 1 + want[0] % 28), f"binary={binary}: timestamp {r[5]}")
    # A filter and the distance in the select list; a prepared statement reused.
    for _ in range(3):
        rows = conn.execute(
            "SELECT id, embedding <-> %s AS distance FROM items WHERE category = %s "
            "ORDER BY embedding <-> %s LIMIT 3",
            (q, "c3", q),
            prepare=True,
        ).fetchall()
        ids = [i for i in nearest(base, q, 200) if i % 4 == 3][:3]
        check([r[0] for r in rows] == ids, f"filtered {rows} != {ids}")
        check(abs(rows[0][1] - float(np.linalg.norm(base[ids[0]] - q))) < 1e-4, "distance column")
    # Errors keep the connection usable, with PostgreSQL's SQLSTATEs.
    try:
        conn.execute("INSERT INTO items (id, embedding) VALUES (%s, %s)", (1, np.zeros(3, dtype=np.float32)))
        raise AssertionError("a 3-d vector went into vector(8)")
    except psycopg.errors.DataException as e:
        check(e.sqlstate == "22000", e.sqlstate)
    try:
        conn.execute("SELECT * FROM no_such_table")
        raise AssertionError("unknown table")
    except psycopg.errors.UndefinedTable:
        pass
    try:
        with conn.cursor().copy("COPY items (id) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.write(b"not the binary format at all")
        raise AssertionError("a COPY without the binary signature loaded")
    except psycopg.errors.BadCopyFileFormat:
        pass
    try:
        with conn.cursor().copy("COPY items (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "vector"])  # a 4-byte value for a bigint column
            copy.write_row([1, base[0]])
        raise AssertionError("an int4 loaded into a bigint column")
    except psycopg.errors.InvalidBinaryRepresentation:
        pass
    check(conn.execute("SELECT count(*) FROM items").fetchone()[0] == 203, "count after errors")
    # COPY into a table with a key and a serial: the serial filled, keys checked.
    conn.execute("CREATE TABLE keyed (id bigserial PRIMARY KEY, slug text UNIQUE, embedding vector(8))")
    with conn.cursor().copy("COPY keyed (slug, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["text", "vector"])
        for i in range(5):
            copy.write_row([f"s{i}", base[i]])
    check([r[0] for r in conn.execute("SELECT id FROM keyed ORDER BY id").fetchall()] == [1, 2, 3, 4, 5],
          "serial values for copied rows")
    try:
        with conn.cursor().copy("COPY keyed (slug, embedding) FROM STDIN") as copy:
            copy.write_row(["new", base[0]])
            copy.write_row(["s3", base[1]])
        raise AssertionError("a duplicate key was copied")
    except psycopg.errors.UniqueViolation:
        pass
    check(conn.execute("SELECT count(*) FROM keyed").fetchone()[0] == 5, "the failed COPY wrote nothing")
    # TypeInfo through the catalog, as register_vector did.
    info = psycopg.types.TypeInfo.fetch(conn, "vector")
    check(info is not None and info.name == "vector" and info.array_oid != 0, f"TypeInfo {info}")
    check(psycopg.types.TypeInfo.fetch(conn, "no_such_type") is None, "unknown type")
    # text[]: Python lists as parameters (sent untyped, in text form), in
    # results in both formats, in binary COPY; && and = ANY with a list.
    conn.execute("CREATE TABLE tagged (id int PRIMARY KEY, tags text[], embedding vector(8))")
    conn.execute("INSERT INTO tagged VALUES (%s, %s, %s), (%s, %s, %s)",
                 (1, ["a", "b c", None], base[0], 2, [], base[1]))
    with conn.cursor().copy("COPY tagged (id, tags) FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["int4", "text[]"])
        copy.write_row([3, ["x", 'q"uote', "a"]])
    rows = conn.execute("SELECT id, tags FROM tagged ORDER BY id").fetchall()
    check(rows == [(1, ["a", "b c", None]), (2, []), (3, ["x", 'q"uote', "a"])], f"text[] rows {rows}")
    with conn.cursor(binary=True) as cur:
        cur.execute("SELECT tags FROM tagged WHERE id = 3")
        check(cur.fetchone()[0] == ["x", 'q"uote', "a"], "text[] in binary")
    hits = conn.execute("SELECT id FROM tagged WHERE tags && %s ORDER BY id", (["a", "zz"],)).fetchall()
    check(hits == [(1,), (3,)], f"&& {hits}")
    hits = conn.execute("SELECT id FROM tagged WHERE %s = ANY(tags) ORDER BY id", ("b c",)).fetchall()
    check(hits == [(1,)], f"ANY(tags) {hits}")
    hits = conn.execute("SELECT id FROM tagged WHERE id = ANY(%s) ORDER BY id", ([2, 3],)).fetchall()
    check(hits == [(2,), (3,)], f"= ANY(list) {hits}")
    # numeric: Decimal parameters, binary COPY, results in both formats.
    from decimal import Decimal

    conn.execute("CREATE TABLE ledger (id int PRIMARY KEY, amount numeric(12,2), rate numeric)")
    conn.execute("INSERT INTO ledger VALUES (%s, %s, %s)", (1, Decimal("19.99"), Decimal("0.0725")))
    with conn.cursor().copy("COPY ledger FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["int4", "numeric", "numeric"])
        copy.write_row([2, Decimal("-1234567890.125"), Decimal("3")])
    with conn.cursor().copy("COPY ledger FROM STDIN") as copy:
        copy.write_row([3, Decimal("0.005"), None])
    want = [(1, Decimal("19.99"), Decimal("0.0725")), (2, Decimal("-1234567890.13"), Decimal("3")),
            (3, Decimal("0.01"), None)]
    for binary in (False, True):
        with conn.cursor(binary=binary) as cur:
            rows = cur.execute("SELECT id, amount, rate FROM ledger ORDER BY id").fetchall()
            check(rows == want, f"numeric binary={binary}: {rows}")
            check(str(rows[0][1]) == "19.99" and str(rows[0][2]) == "0.0725", f"numeric text {rows[0]}")
    total = conn.execute("SELECT sum(amount) FROM ledger WHERE amount > %s", (Decimal("0"),)).fetchone()[0]
    check(total == Decimal("20.00"), f"sum {total}")
    try:
        conn.execute("INSERT INTO ledger VALUES (%s, %s, NULL)", (4, Decimal("1e12")))
        raise AssertionError("a numeric past its precision was stored")
    except psycopg.errors.NumericValueOutOfRange:
        pass
    # time: parameters, binary COPY, results in both formats; an interval result.
    conn.execute("CREATE TABLE shifts (id int PRIMARY KEY, starts time)")
    conn.execute("INSERT INTO shifts VALUES (%s, %s)", (1, datetime.time(9, 30, 15, 250000)))
    with conn.cursor().copy("COPY shifts FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["int4", "time"])
        copy.write_row([2, datetime.time(22, 0)])
    for binary in (False, True):
        with conn.cursor(binary=binary) as cur:
            rows = cur.execute(
                "SELECT id, starts, starts - '09:00'::time FROM shifts WHERE starts > %s ORDER BY id",
                (datetime.time(9, 0),),
            ).fetchall()
            check(rows == [(1, datetime.time(9, 30, 15, 250000), datetime.timedelta(minutes=30, seconds=15.25)),
                           (2, datetime.time(22, 0), datetime.timedelta(hours=13))],
                  f"time binary={binary}: {rows}")
print("psycopg 3: ok")
