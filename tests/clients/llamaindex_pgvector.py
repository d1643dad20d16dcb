"""LlamaIndex's PGVectorStore (llama-index-vector-stores-postgres, over
SQLAlchemy with psycopg2): CREATE SCHEMA IF NOT EXISTS / information_schema
checks, the data table with a bigserial key, varchar, json(b) metadata and
an expression index on metadata ->> 'ref_doc_id', nodes added with
RETURNING, cosine search with metadata filters (->>, casts to float, IN,
@>, ?|, LIKE), get_nodes, delete by ref_doc_id and by node id, clear; then
the same through its async API (SQLAlchemy over asyncpg, which introspects
the vector type through pg_type with correlated subqueries)."""
import asyncio

from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
)
from llama_index.vector_stores.postgres import PGVectorStore

from common import PORT, check

DIM = 4


def open_store(table):
    return PGVectorStore.from_params(
        host="127.0.0.1",
        port=str(PORT),
        database="postgres",
        user="postgres",
        password="x",
        table_name=table,
        embed_dim=DIM,
        use_jsonb=True,
    )


store = open_store("nodes")

rows = [
    # id, doc, text, metadata, embedding
    ("n1", "d1", "cats purr", {"kind": "mammal", "legs": 4, "tags": ["pet", "cat"]}, [1, 0, 0, 0]),
    ("n2", "d1", "dogs bark", {"kind": "mammal", "legs": 4, "tags": ["pet", "dog"]}, [0.9, 0.1, 0, 0]),
    ("n3", "d2", "eagles soar", {"kind": "bird", "legs": 2, "tags": ["wild"]}, [0, 1, 0, 0]),
    ("n4", "d2", "trout swim", {"kind": "fish", "legs": 0, "tags": []}, [0, 0, 1, 0]),
    ("n5", "d3", "parrots talk", {"kind": "bird", "legs": 2, "tags": ["pet"]}, [0.5, 0.5, 0, 0]),
]
nodes = [
    TextNode(
        id_=i,
        text=t,
        metadata=m,
        embedding=[float(x) for x in e],
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=d)},
    )
    for i, d, t, m, e in rows
]
ids = store.add(nodes)
check(ids == [r[0] for r in rows], f"add returned {ids}")


def query(filters=None, k=5, emb=(1.0, 0.05, 0.0, 0.0)):
    res = store.query(
        VectorStoreQuery(query_embedding=list(emb), similarity_top_k=k, filters=filters)
    )
    return res.ids, res.similarities


got, sims = query(k=2)
check(got == ["n1", "n2"], f"unfiltered {got}")
check(0.99 < sims[0] < 1.0 and sims[0] > sims[1], f"similarities {sims}")


def f(key, value, op=FilterOperator.EQ):
    return MetadataFilters(filters=[MetadataFilter(key=key, value=value, operator=op)])


cases = [
    (f("kind", "bird"), ["n5", "n3"]),
    (f("legs", 2, FilterOperator.GT), ["n1", "n2"]),
    (f("legs", 2, FilterOperator.LTE), ["n5", "n3", "n4"]),
    (f("kind", ["fish", "bird"], FilterOperator.IN), ["n5", "n3", "n4"]),
    (f("kind", ["mammal"], FilterOperator.NIN), ["n5", "n3", "n4"]),
    (f("tags", "pet", FilterOperator.CONTAINS), ["n1", "n2", "n5"]),
    (f("tags", ["wild", "dog"], FilterOperator.ANY), ["n2", "n3"]),
    (f("tags", ["pet", "cat"], FilterOperator.ALL), ["n1"]),
    (f("kind", "amm", FilterOperator.TEXT_MATCH), ["n1", "n2"]),
    (
        MetadataFilters(
            filters=[
                MetadataFilter(key="kind", value="bird"),
                MetadataFilter(key="legs", value=0),
            ],
            condition=FilterCondition.OR,
        ),
        ["n5", "n3", "n4"],
    ),
]
for flt, expected in cases:
    got, _ = query(flt)
    check(got == expected, f"filter {flt.filters}: {got} (want {expected})")

fetched = store.get_nodes(node_ids=["n3", "n4"])
check(sorted(n.node_id for n in fetched) == ["n3", "n4"], f"get_nodes {fetched}")
check({n.node_id: n.metadata["kind"] for n in fetched} == {"n3": "bird", "n4": "fish"}, "metadata")

store.delete(ref_doc_id="d1")
got, _ = query()
check(got == ["n5", "n3", "n4"], f"after delete(ref_doc_id) {got}")
store.delete_nodes(node_ids=["n4"])
got, _ = query()
check(got == ["n5", "n3"], f"after delete_nodes {got}")
store.clear()
got, _ = query()
check(got == [], f"after clear {got}")


async def run_async():
    astore = open_store("anodes")
    ids = await astore.async_add(nodes)
    check(ids == [r[0] for r in rows], f"async_add returned {ids}")
    res = await astore.aquery(VectorStoreQuery(query_embedding=[1.0, 0.05, 0.0, 0.0], similarity_top_k=2))
    check(res.ids == ["n1", "n2"], f"aquery {res.ids}")
    res = await astore.aquery(
        VectorStoreQuery(query_embedding=[1.0, 0.05, 0.0, 0.0], similarity_top_k=5, filters=f("kind", "bird"))
    )
    check(res.ids == ["n5", "n3"], f"aquery filtered {res.ids}")
    fetched = await astore.aget_nodes(node_ids=["n3", "n4"])
    check(sorted(n.node_id for n in fetched) == ["n3", "n4"], f"aget_nodes {fetched}")
    await astore.adelete_nodes(node_ids=["n1"])
    await astore.adelete(ref_doc_id="d2")
    res = await astore.aquery(VectorStoreQuery(query_embedding=[1.0, 0.05, 0.0, 0.0], similarity_top_k=5))
    check(res.ids == ["n2", "n5"], f"after async deletes {res.ids}")
    await astore.aclear()
    await astore.close()


asyncio.run(run_async())
print("llamaindex ok")
