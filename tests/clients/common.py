"""Shared by the client scripts: the server's address and exact answers.

Each script is run by tests/clients.rs as `python SCRIPT PORT` against a
fresh Quiver and exits non-zero (an AssertionError or a driver error) when a
check fails."""
import sys

import numpy as np

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 5433
DSN = f"host=127.0.0.1 port={PORT} user=postgres dbname=postgres"


def vectors(n, dim, seed):
    """Deterministic float32 vectors."""
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def nearest(base, q, k):
    """Exact k nearest ids by L2 (ids are row positions), ties by id."""
    d = ((base - q) ** 2).sum(axis=1)
    return [int(i) for i in np.lexsort((np.arange(len(base)), d))[:k]]


def check(cond, what):
    if not cond:
        raise AssertionError(what)
