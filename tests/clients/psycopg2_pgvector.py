"""psycopg2 with pgvector-python's register_vector."""
import numpy as np
import psycopg2
import psycopg2.errors
from pgvector.psycopg2 import register_vector

from common import DSN, check, nearest, vectors

base = vectors(50, 4, 2)
conn = psycopg2.connect(DSN)
conn.autocommit = True
cur = conn.cursor()
cur.execute("CREATE EXTENSION IF NOT EXISTS vector")
register_vector(conn)
cur.execute("CREATE TABLE items2 (id bigint, embedding vector(4))")
cur.executemany("INSERT INTO items2 (id, embedding) VALUES (%s, %s)", [(i, v) for i, v in enumerate(base)])
q = base[3]
cur.execute("SELECT id, embedding FROM items2 ORDER BY embedding <-> %s LIMIT 4", (q,))
rows = cur.fetchall()
check([r[0] for r in rows] == nearest(base, q, 4), f"{[r[0] for r in rows]}")
check(isinstance(rows[0][1], np.ndarray) and np.array_equal(rows[0][1], q), "vector result")
try:
    cur.execute("SELECT id FROM items2 ORDER BY embedding <-> %s LIMIT 1", (np.zeros(2),))
    raise AssertionError("dimension mismatch accepted")
except psycopg2.errors.DataException:
    pass
cur.execute("SELECT count(*) FROM items2")
check(cur.fetchone()[0] == 50, "count")
print("psycopg2: ok")
