"""LangChain's PGVector store (langchain-postgres, over SQLAlchemy and
psycopg 3) as its documentation uses it: a collection table and an
embedding table with a uuid key, a foreign key ON DELETE CASCADE and jsonb
metadata, upserts by id, similarity search with metadata filters (which
LangChain writes as jsonb_path_match / ->> / jsonb_exists), delete by id and
delete_collection."""
import math
import sys

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_postgres import PGVector

from common import PORT, check

DIM = 16


class WordEmbeddings(Embeddings):
    """A bag of words hashed into DIM buckets, normalized: texts sharing
    words are near (deterministic, no model)."""

    def embed_query(self, text):
        v = [0.0] * DIM
        for w in text.lower().split():
            v[sum(map(ord, w)) % DIM] += 1.0
        n = math.sqrt(sum(x * x for x in v)) or 1.0
        return [x / n for x in v]

    def embed_documents(self, texts):
        return [self.embed_query(t) for t in texts]


URL = f"postgresql+psycopg://postgres@127.0.0.1:{PORT}/postgres"
dimensionless = len(sys.argv) > 2 and sys.argv[2] == "dimensionless"


def collection(name):
    return PGVector(
        embeddings=WordEmbeddings(),
        collection_name=name,
        connection=URL,
        use_jsonb=True,
        embedding_length=None if dimensionless else DIM,
    )


store = collection("animals")
texts = {
    "cat": ("the cat sat on the mat", {"kind": "mammal", "legs": 4, "tags": ["pet"]}),
    "dog": ("the dog chased the cat", {"kind": "mammal", "legs": 4, "tags": ["pet", "guard"]}),
    "eagle": ("an eagle flew over the mountain", {"kind": "bird", "legs": 2}),
    "trout": ("a trout swam in the river", {"kind": "fish", "legs": 0}),
    "parrot": ("the parrot sat on the cat", {"kind": "bird", "legs": 2, "tags": ["pet"]}),
}
ids = store.add_documents(
    [Document(page_content=t, metadata=m) for t, m in texts.values()], ids=list(texts)
)
check(ids == list(texts), f"ids {ids}")

hits = store.similarity_search("cat on the mat", k=2)
check([d.id for d in hits] == ["cat", "parrot"], f"unfiltered {[d.id for d in hits]}")
check(hits[0].metadata["tags"] == ["pet"], f"metadata {hits[0].metadata}")

# Filters as LangChain writes them.
cases = [
    ({"kind": "bird"}, ["parrot", "eagle"]),
    ({"kind": {"$ne": "mammal"}}, ["parrot", "eagle", "trout"]),
    ({"legs": {"$gte": 2}}, ["cat", "parrot", "dog", "eagle"]),
    ({"legs": {"$between": [1, 3]}}, ["parrot", "eagle"]),
    ({"kind": {"$in": ["fish", "bird"]}}, ["parrot", "eagle", "trout"]),
    ({"kind": {"$nin": ["mammal"]}}, ["parrot", "eagle", "trout"]),
    ({"tags": {"$exists": True}}, ["cat", "parrot", "dog"]),
    ({"kind": {"$like": "ma%"}}, ["cat", "dog"]),
    ({"$and": [{"kind": "mammal"}, {"legs": 4}]}, ["cat", "dog"]),
    ({"$or": [{"kind": "fish"}, {"legs": {"$lt": 1}}]}, ["trout"]),
]
for flt, expected in cases:
    got = [d.id for d in store.similarity_search("the cat sat on the mat", k=5, filter=flt)]
    check(sorted(got) == sorted(expected), f"filter {flt}: {got} (want {expected})")
    check(len(got) < 2 or got[0] == expected[0], f"filter {flt}: order {got} (want {expected})")

scored = store.similarity_search_with_score("a trout swam in the river", k=1)
check(scored[0][0].id == "trout" and abs(scored[0][1]) < 1e-5, f"scored {scored}")

# Upsert by id: the text and metadata change, the count does not.
store.add_documents(
    [Document(page_content="the cat sleeps", metadata={"kind": "mammal", "legs": 4})], ids=["cat"]
)
got = store.get_by_ids(["cat", "dog"])
check(sorted(d.id for d in got) == ["cat", "dog"], f"get_by_ids {got}")
check([d.page_content for d in got if d.id == "cat"] == ["the cat sleeps"], f"upsert {got}")

store.delete(ids=["dog"])
got = [d.id for d in store.similarity_search("the dog chased the cat", k=5)]
check("dog" not in got and len(got) == 4, f"after delete {got}")

# A second collection in the same tables, then the first one dropped: its
# embeddings go with it (ON DELETE CASCADE), the other's stay.
other = collection("plants")
other.add_documents([Document(page_content="an oak tree", metadata={"kind": "tree"})], ids=["oak"])
store.delete_collection()
check([d.id for d in other.similarity_search("oak tree", k=5)] == ["oak"], "other collection kept")
import psycopg

with psycopg.connect(f"host=127.0.0.1 port={PORT} user=postgres dbname=postgres") as conn:
    n = conn.execute("SELECT count(*) FROM langchain_pg_embedding").fetchone()[0]
    check(n == 1, f"rows left after delete_collection: {n}")
print("langchain ok")
