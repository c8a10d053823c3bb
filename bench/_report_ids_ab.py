"""A/B of the report id key: the store alone (decode + save_batch) into an empty store and into
one holding millions of ids over the 14-day window, with this tree's code (ids keyed by measured
time, migration 0005) and with an earlier commit's (ids keyed on the id first).

    .venv/bin/python bench/_report_ids_ab.py --old a3c3a79 --ids 3000000 --runs 2

The earlier commit's tree is unpacked with `git archive` into a temporary directory and run
there, so each side runs its own store code and migrations; sides alternate run by run. A
helper of bench/ingest.py's national part (recorded there), not a bench of its own.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs in the tree under test (cwd): fills a store the way that tree keys its ids, then times
# 60,000 reports into an empty store and into the filled one.
CHILD = r"""
import sqlite3, sys, tempfile, time
from datetime import UTC, datetime, timedelta
sys.path.insert(0, "bench")
sys.path.insert(0, ".")
import ingest as bench_ingest
import psycopg
from harness.pgserver import PrivatePostgres
from edugap.collector.model import Received
from edugap.collector.store import open_store
from edugap.protocol.messages import decode

backend, ids = sys.argv[1], int(sys.argv[2])
n = 60000
now = datetime.now(UTC)
until = now - timedelta(hours=1, minutes=1)
step = 14 * 86400 / ids
batches = [[Received(decode(t, p), now) for t, p in bench_ingest.backlog(n)[a:a + 2000]]
           for a in range(0, n, 2000)]

def timed(url):
    store = open_store(url)
    start = time.perf_counter()
    for batch in batches:
        store.save_batch(batch)
    took = time.perf_counter() - start
    store.close()
    return n / took

def fill(url, pg):
    open_store(url).close()
    new = True
    if pg:
        conn = psycopg.connect(url, autocommit=True)
        cols = [r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns"
                                           " WHERE table_name = 'report_ids'")]
        new = "measured_at" in cols
        t = "%s::timestamptz - (g::float8 / %s) * interval '14 days'"
        school = "'VN-' || lpad((g %% 60000)::text, 6, '0')"
        if new:
            conn.execute(f"INSERT INTO report_ids SELECT {t}, {school}, gen_random_uuid()::text,"
                         f" {t} FROM generate_series(1, %s) g", (until, ids, until, ids, ids))
        else:
            conn.execute(f"INSERT INTO report_ids (report_id, school_id, received_at) SELECT"
                         f" gen_random_uuid()::text, {school}, {t} FROM generate_series(1, %s) g",
                         (until, ids, ids))
        conn.execute("INSERT INTO devices (school_id, device_id, last_seen) SELECT 'VN-' ||"
                     " lpad(s::text, 6, '0'), 'dev-' || lpad(d::text, 2, '0'), %s FROM"
                     " generate_series(0, 59999) s, generate_series(0, 9) d", (until,))
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")
        conn.close()
        return new
    conn = sqlite3.connect(url, isolation_level=None)
    cols = [r[1] for r in conn.execute("PRAGMA table_info(report_ids)")]
    new = "measured_at" in cols
    end = until.timestamp()
    gen = "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < ?) "
    conn.execute("BEGIN")
    if new:
        conn.execute(gen + "INSERT INTO report_ids SELECT ? - i * ?, printf('VN-%06d', i % 60000),"
                     " lower(hex(randomblob(16))), ? - i * ? FROM g", (ids, end, step, end, step))
    else:
        conn.execute(gen + "INSERT INTO report_ids (report_id, school_id, received_at) SELECT *"
                     " FROM (SELECT lower(hex(randomblob(16))) AS r, printf('VN-%06d', i % 60000),"
                     " ? - i * ? FROM g) ORDER BY r", (ids, end, step))
    conn.execute("WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < 59999),"
                 " d(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM d WHERE j < 9) INSERT INTO"
                 " devices (school_id, device_id, last_seen) SELECT printf('VN-%06d', i),"
                 " printf('dev-%02d', j), ? FROM s, d", (end,))
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return new

if backend == "postgres":
    with PrivatePostgres() as pg:
        empty = timed(pg.create_database("empty"))
        url = pg.create_database("full")
        new = fill(url, True)
        full = timed(url)
else:
    work = tempfile.mkdtemp()
    empty = timed(work + "/empty.db")
    new = fill(work + "/full.db", False)
    full = timed(work + "/full.db")
key = "measured time first" if new else "id first"
print(f"| {backend} | {key} | {empty:,.0f} | {full:,.0f} | {full / empty:.2f} |", flush=True)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", required=True, help="the earlier commit to compare with")
    parser.add_argument("--ids", type=int, default=3_000_000)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    old = Path(tempfile.mkdtemp(prefix="edugap-ab-"))
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.old, "edugap", "bench", "tests"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        print(f"| store | key | empty store /s | {args.ids:,} ids stored /s | ratio |")
        print("| --- | --- | --- | --- | --- |")
        for run in range(args.runs):
            for backend in ("sqlite", "postgres"):
                trees = (old, ROOT) if run % 2 == 0 else (ROOT, old)
                for tree in trees:
                    argv = [sys.executable, "-c", CHILD, backend, str(args.ids)]
                    subprocess.run(argv, cwd=tree, check=True)
    finally:
        shutil.rmtree(old, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
