"""A throwaway PostgreSQL server on 127.0.0.1, from Debian's `postgresql` package, for tests and a try-out.

    python scripts/local_postgres.py start /tmp/digitlab-pg 55432   # prints the DIGITLAB_DATABASE_URL to use
    python scripts/local_postgres.py stop /tmp/digitlab-pg

The cluster lives entirely in the folder given (data, socket, log); `stop` shuts it down. Run as root, the
server runs as the `postgres` user, as PostgreSQL requires. It asks for a password (scram-sha-256, no "trust"),
drawn when the cluster is made and kept in the folder's `password` file (readable by its owner only); the URL
printed carries it. A server that cannot start raises with the reason and the end of its log.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

USER, DATABASE = "digitlab", "digitlab"


class PostgresError(RuntimeError):
    pass


def bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    if shutil.which("pg_ctl"):
        return Path(shutil.which("pg_ctl")).parent
    raise PostgresError("PostgreSQL is not installed: apt-get install -y postgresql (Debian's package)")


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        args = ["runuser", "-u", "postgres", "--", *args]
    return subprocess.run(args, capture_output=True, text=True, **kwargs)


def start(folder: str | Path, port: int) -> str:
    """Create (if new) and start a cluster in ``folder`` listening on 127.0.0.1:``port``; returns its URL."""
    folder, pg = Path(folder).resolve(), bin_dir()
    data, log = folder / "data", folder / "server.log"
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    secret = folder / "password"
    if not (data / "PG_VERSION").exists():
        secret.write_text(secrets.token_urlsafe(24))
        secret.chmod(0o600)
        if os.geteuid() == 0:
            shutil.chown(secret, "postgres", "postgres")
        done = _run([str(pg / "initdb"), "-D", str(data), "-U", USER, "--auth=scram-sha-256", f"--pwfile={secret}",
                     "-E", "UTF8", "--no-sync"])
        if done.returncode:
            raise PostgresError(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")
    password = secret.read_text().strip()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=on"
    done = _run([str(pg / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"])
    if done.returncode:
        tail = log.read_text()[-2000:] if log.exists() else ""
        raise PostgresError(f"PostgreSQL did not start on 127.0.0.1:{port}: {done.stderr.strip()} {tail}")
    for _ in range(50):
        made = _run([str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", USER, DATABASE],
                    env={**os.environ, "PGPASSWORD": password})
        if made.returncode == 0 or "already exists" in made.stderr:
            return f"postgresql://{USER}:{password}@127.0.0.1:{port}/{DATABASE}"
        time.sleep(0.2)
    raise PostgresError(f"could not create the database: {made.stderr.strip()}")


def stop(folder: str | Path) -> None:
    data = Path(folder).resolve() / "data"
    if (data / "postmaster.pid").exists():
        _run([str(bin_dir() / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("start", "stop"):
        sys.exit(__doc__)
    if sys.argv[1] == "start":
        print(start(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 55432))
    else:
        stop(sys.argv[2])
