"""The class collection's database under a rush (issue 18): many processes saving at once, and kills mid-save.

    python bench/bench_collection_db.py            # SQLite and PostgreSQL (Debian's, started on 127.0.0.1)

1. 4 processes save 50 drawings each at the same moment (every fifth saved twice: a retried click):
   stored, lost and duplicated counted, with the wall time; in SQLite (WAL) and in PostgreSQL.
2. 20 times, a process saving as fast as it can is killed with SIGKILL: after each, the database opens and
   every listed drawing loads.
Results go first under "## Collection database" in bench/RESULTS.md (unless --no-record).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import local_postgres  # noqa: E402
from results import record  # noqa: E402

from digitlab.drawings_db import Drawings  # noqa: E402

SAVER = ROOT / "scripts" / "save_drawings.py"


def saver(url: str, who: str, n: int | None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(SAVER), url, who, "--forever" if n is None else str(n)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def rush(url: str, processes: int, each: int) -> dict:
    Drawings(url)
    t = time.perf_counter()
    running = [saver(url, f"p{k}", each) for k in range(processes)]
    for p in running:
        _, err = p.communicate(timeout=600)
        if p.returncode:
            raise SystemExit(err.decode()[-2000:])
    seconds = time.perf_counter() - t
    ids = [d.id for d in Drawings(url).list()]
    wanted = {f"p{k}-{i:04d}" for k in range(processes) for i in range(each)}
    return {"stored": len(ids), "lost": len(wanted - set(ids)), "duplicated": len(ids) - len(set(ids)),
            "seconds": seconds}


def kills(url: str, times: int) -> dict:
    db, whole = Drawings(url), 0
    for k in range(times):
        p = saver(url, f"k{k}", None)
        p.stdout.readline()  # it has saved once and goes on saving
        time.sleep(0.01 * (k % 7))
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        listed = db.list()
        _, _, loaded = db.load()
        whole += len(loaded) == len(listed)
    return {"kills": times, "whole": whole, "drawings": len(db.list())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--each", type=int, default=50)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="digitlab-bench-db-"))
    pg_folder = Path(tempfile.mkdtemp(prefix="digitlab-bench-pg-"))  # in /tmp itself: the postgres user reaches it
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = [f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {platform.node() or 'machine'} · {os.cpu_count()} cores",
           "", f"`python bench/bench_collection_db.py {' '.join(sys.argv[1:])}`".replace(" `", "`"), "",
           f"| database | {args.processes} processes x {args.each} saves: stored | lost | duplicated | seconds | "
           f"{args.kills} kills mid-save: database whole after | drawings listed, all loading |",
           "|---|---|---|---|---|---|---|"]
    try:
        urls = {"SQLite (WAL)": f"sqlite:///{folder / 'collection.sqlite3'}",
                "PostgreSQL": local_postgres.start(pg_folder, port)}
        for name, url in urls.items():
            r, k = rush(url, args.processes, args.each), kills(url, args.kills)
            print(name, r, k, flush=True)
            out.append(f"| {name} | {r['stored']} | {r['lost']} | {r['duplicated']} | {r['seconds']:.1f} | "
                       f"{k['whole']} of {k['kills']} | {k['drawings']} |")
    finally:
        local_postgres.stop(pg_folder)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(pg_folder, ignore_errors=True)
    print("\n".join(out))
    if not args.no_record:
        record("## Collection database", out)


if __name__ == "__main__":
    main()
