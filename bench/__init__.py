"""Load benchmark of the identity provider (issue 8): ``make bench`` runs :mod:`bench.run`.

It starts the IdP under gunicorn on a dedicated PostgreSQL database and an own Redis key prefix,
all on 127.0.0.1, drives it with a closed-loop load generator (Python threads), measures the same
token-endpoint workloads on node ``oidc-provider`` (``bench/peer/provider.mjs``), and writes
``bench/results/report.md`` and ``report.json``. Not part of ``make test`` (a smoke test runs a tiny
mode of it).
"""
