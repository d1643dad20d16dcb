"""Writes the wordnet-minilm set as COPY text files for the re-rank benchmark.

  python3 prepare.py DATA_DIR OUT_DIR
    OUT_DIR/docs.tsv     id <TAB> text <TAB> [embedding]   (116,659 rows)
    OUT_DIR/queries.tsv  lemma <TAB> [embedding]           (1,000 queries)

The lemma (the text before ': ') is the lexical query: a short phrase, as a
user would type next to the vector. Each float16 value is written as the
shortest decimal that reads back to the same float32, like shared/bench does.
"""
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq


def esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def vec(row) -> str:
    return "[" + ",".join(repr(float(x)) for x in row.astype(np.float32)) + "]"


def main() -> None:
    data, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    base = np.load(data / "base.npy")
    meta = pq.read_table(data / "meta.parquet").to_pydict()
    with open(out / "docs.tsv", "w") as f:
        for i, (id_, text) in enumerate(zip(meta["id"], meta["text"])):
            f.write(f"{id_}\t{esc(text)}\t{vec(base[i])}\n")
    queries = np.load(data / "queries.npy")
    qmeta = pq.read_table(data / "queries_meta.parquet").to_pydict()
    with open(out / "queries.tsv", "w") as f:
        for i, text in enumerate(qmeta["text"]):
            lemma = text.split(": ", 1)[0]
            f.write(f"{esc(lemma)}\t{vec(queries[i])}\n")


if __name__ == "__main__":
    main()
