"""SQLAlchemy 2 ORM with pgvector-python's Vector type, over psycopg 3:
metadata reflection at create_all/drop_all, server-generated keys
(bigserial + RETURNING), the session's transactions (autoflush, rollback),
unique violations, filtered nearest-neighbour queries."""
import numpy as np
from pgvector.sqlalchemy import Vector
from sqlalchemy import BigInteger, String, create_engine, func, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from common import PORT, check, nearest, vectors


class Base(DeclarativeBase):
    pass


class Document(Base):
    __tablename__ = "documents"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    title: Mapped[str] = mapped_column(String(100), unique=True)
    category: Mapped[str] = mapped_column(String(20))
    embedding = mapped_column(Vector(8))


base = vectors(60, 8, 4)
engine = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{PORT}/postgres")
Base.metadata.create_all(engine)
check(inspect(engine).has_table("documents"), "has_table after create_all")
Base.metadata.create_all(engine)  # a second time: the table is found, nothing created
# Reflection of keys reads pg_constraint / pg_index (arrays come back as arrays).
insp = inspect(engine)
pk = insp.get_pk_constraint("documents")
check(pk["constrained_columns"] == ["id"] and pk["name"] == "documents_pkey", f"pk {pk}")
uniques = insp.get_unique_constraints("documents")
check([u["column_names"] for u in uniques] == [["title"]], f"unique {uniques}")
cols = {c["name"]: c for c in insp.get_columns("documents")}
check(str(cols["title"]["type"]) == "VARCHAR(100)" and not cols["id"]["nullable"], f"columns {cols}")
check(cols["id"]["autoincrement"] and "nextval" in cols["id"]["default"], f"serial {cols['id']}")

with Session(engine) as s:
    docs = [Document(title=f"doc {i}", category=f"c{i % 3}", embedding=base[i]) for i in range(60)]
    s.add_all(docs)
    s.commit()
    # Keys came back from the server (bigserial, INSERT … RETURNING).
    check(sorted(d.id for d in docs) == list(range(1, 61)), f"ids {[d.id for d in docs][:5]}…")
    id_of = {d.title: d.id for d in docs}

    q = base[5]
    got = s.scalars(select(Document).order_by(Document.embedding.l2_distance(q)).limit(5)).all()
    want = [id_of[f"doc {i}"] for i in nearest(base, q, 5)]
    check([d.id for d in got] == want, f"{[d.id for d in got]} != {want}")
    check(np.allclose(got[0].embedding, q), "vector round trip")
    got = s.scalars(
        select(Document)
        .where(Document.category == "c2")
        .order_by(Document.embedding.cosine_distance(q))
        .limit(3)
    ).all()
    check(all(d.category == "c2" for d in got) and len(got) == 3, "filtered search")
    dist = s.scalar(select(Document.embedding.l2_distance(q)).where(Document.id == id_of["doc 5"]))
    check(abs(dist) < 1e-6, f"distance {dist}")

    # Autoflush inside the session's transaction, then a rollback.
    s.add(Document(title="draft", category="c0", embedding=base[0]))
    check(s.scalar(select(func.count()).select_from(Document)) == 61, "the transaction sees its row")
    s.rollback()
    check(s.scalar(select(func.count()).select_from(Document)) == 60, "rollback removed it")

    # A duplicate title violates the unique constraint.
    s.add(Document(title="doc 1", category="c0", embedding=base[0]))
    try:
        s.commit()
        raise AssertionError("a duplicate title was accepted")
    except IntegrityError as e:
        check(getattr(e.orig, "sqlstate", None) == "23505", str(e.orig))
        s.rollback()

    # Update and delete through the ORM.
    d = s.get(Document, id_of["doc 7"])
    d.title = "renamed"
    s.commit()
    check(s.scalar(select(Document.title).where(Document.id == id_of["doc 7"])) == "renamed", "update")
    s.delete(s.get(Document, id_of["doc 8"]))
    s.commit()
    check(s.scalar(select(func.count()).select_from(Document)) == 59, "delete")

Base.metadata.drop_all(engine)
check(not inspect(engine).has_table("documents"), "dropped")
print("sqlalchemy: ok")
