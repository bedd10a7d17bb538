"""Run the multi-worker journey load test and print its figures.

    .venv/bin/python scripts/load/journey.py [--users 50]

It runs ``tests/resilience/test_load_journey.py`` (gunicorn -w 4 on PostgreSQL + Redis, the real
SMTP sink, everything on 127.0.0.1) with ``IDP_LOAD_USERS`` people and prints the JSON figures the
test writes (users, requests, wall time, p50/p95/max latency, 5xx count). The exit status is the test's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    """Parse the options, run the test, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50, help="concurrent people (default 50)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "figures.json"
        env = {**os.environ, "IDP_LOAD_USERS": str(args.users), "IDP_LOAD_REPORT": str(report)}
        status = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                  "tests/resilience/test_load_journey.py"], cwd=ROOT, env=env)
        if report.exists():
            print(json.dumps(json.loads(report.read_text(encoding="utf-8")), indent=2))
    return status


if __name__ == "__main__":
    sys.exit(main())
