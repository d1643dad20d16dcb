#!/usr/bin/env python3
"""Start / tune / stop a throw-away PostgreSQL 16 + pgvector 0.6.2 from the
`pgserver` wheel (pip install pgserver), for bench/run.sh.

    python3 pgserver_ctl.py start DIR   # initdb if needed, start, print the DSN
    python3 pgserver_ctl.py tune DIR    # shared_buffers=2GB, jit=off, restart; print the DSN
    python3 pgserver_ctl.py stop DIR    # fast shutdown (no error if not running)

The server listens on a Unix socket inside DIR only (no TCP port), and keeps
running after this script exits: `stop` ends it.  As root, pgserver runs
PostgreSQL as the system user `pgserver` (it creates it).
"""
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

# platformdirs warns about an unset XDG_RUNTIME_DIR on every import of pgserver
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
logging.basicConfig(level=logging.WARNING)

import pgserver  # noqa: E402
from pgserver._commands import pg_ctl  # noqa: E402

# the bench README's advice: the table and its HNSW index (~240 MB each) must fit in shared buffers
TUNING = ["ALTER SYSTEM SET shared_buffers = '2GB'", "ALTER SYSTEM SET jit = off"]


def start(d: Path) -> str:
    # cleanup_mode=None: leave the server running when this process exits
    return pgserver.get_server(d, cleanup_mode=None).get_uri()


def stop(d: Path) -> None:
    d = d.expanduser().resolve()
    # get_server() caches a handle per directory: forget it so that a later start() really starts
    pgserver.PostgresServer._instances.pop(d, None)
    if not (d / "postmaster.pid").exists():
        return
    user = "pgserver" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=d, user=user, timeout=120)
    except subprocess.CalledProcessError:
        pass  # already stopped


def tune(d: Path) -> str:
    import psycopg
    with psycopg.connect(start(d), autocommit=True) as conn:
        for s in TUNING:
            conn.execute(s)
    stop(d)
    uri = start(d)
    with psycopg.connect(uri, autocommit=True) as conn:
        got = {k: conn.execute(f"SHOW {k}").fetchone()[0] for k in ("shared_buffers", "jit")}
    if got != {"shared_buffers": "2GB", "jit": "off"}:
        sys.exit(f"pgserver_ctl: tuning did not take effect: {got}")
    return uri


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "tune", "stop"):
        sys.exit(__doc__)
    cmd, d = sys.argv[1], Path(sys.argv[2])
    if cmd == "stop":
        stop(d)
    else:
        print(start(d) if cmd == "start" else tune(d))


if __name__ == "__main__":
    main()
