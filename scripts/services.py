"""Check (and under CI, start) the local services the test suite uses: PostgreSQL and Redis.

Prints one line per service. Tests that need a service skip with a clear reason when it is absent,
except under ``CI=true``, where they must run; so here, under CI, a stopped service is started with
the machine's documented command and an absent one fails the run.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

SERVICES = {
    "postgresql": ("127.0.0.1", 5432),
    "redis": ("127.0.0.1", 6379),
}

START = {
    "postgresql": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql | head -1) main start",
    "redis": 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no',
}
BINARIES = {"postgresql": "pg_ctlcluster", "redis": "redis-server"}


def is_up(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def main() -> int:
    ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    failed = False
    for name, (host, port) in SERVICES.items():
        if is_up(host, port):
            print(f"services: {name} up on {host}:{port}")
            continue
        if ci and shutil.which(BINARIES[name]):
            print(f"services: {name} down; starting it")
            subprocess.run(START[name], shell=True, check=False)
            for _ in range(40):
                if is_up(host, port):
                    break
                time.sleep(0.25)
        if is_up(host, port):
            print(f"services: {name} up on {host}:{port}")
        elif ci:
            print(f"services: {name} is not reachable on {host}:{port}; CI requires it", file=sys.stderr)
            failed = True
        else:
            print(f"services: {name} not reachable on {host}:{port}; its tests will skip")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
