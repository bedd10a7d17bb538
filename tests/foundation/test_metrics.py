"""Prometheus metrics on /metrics: each counter moves as a scripted journey did, no secret in any line,
and only the configured readers get them (bearer token compared in constant time)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import base_config, free_port
from tests.login.conftest import bind, new_interaction, post_code, post_identify
from tests.oidc.conftest import EMAIL, NIR, OTHER_NIR, PASSWORD, flow, make_person, make_rp, query_of, redeem

TOKEN = "metrics-reader-token-0123456789abcdef"


def _scrape(client: Any, **headers: str) -> tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 200 and answer.content_type.startswith("text/plain")
    text = answer.get_data(as_text=True)
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return text, values


def _delta(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def _journey(app: Any, client: Any, mailbox: Any) -> list[str]:
    """Wrong password, right password, wrong code, right code, tokens, a refresh, a replayed refresh; another
    account locked by 3 wrong passwords; one e-mail the relay refuses. Returns every secret it used."""
    person, rp = make_person(app), make_rp(app, "web")
    f = flow(rp, scope="openid email")
    assert client.get("/authorize", query_string=f.params).status_code == 303
    assert post_identify(client, NIR, "Pas-Le-Bon-Mot-1").status_code == 200
    assert post_identify(client, NIR, PASSWORD).status_code == 303
    code = mailbox.code()
    assert post_code(client, "000000" if code != "000000" else "111111").status_code == 200
    done = post_code(client, code)
    while done.headers["Location"].startswith("/"):  # pages between the code and the end, if any
        done = client.get(done.headers["Location"])
    auth_code = query_of(done)["code"]  # the last step answered the RP
    tokens = redeem(client, rp, auth_code, f).json
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    rotated = client.post("/token", data=refresh, auth=(rp.client_id, rp.secret)).json
    assert client.post("/token", data=refresh, auth=(rp.client_id, rp.secret)).json["error"] == "invalid_grant"

    make_person(app, nir=OTHER_NIR, email="bob@example.org")
    other = app.test_client()
    bind(other, new_interaction(app))
    for attempt in range(3):
        post_identify(other, OTHER_NIR, f"Pas-Le-Bon-Mot-{attempt}")

    dead_relay = base_config(None, None, smtp_port=free_port(), database_url="sqlite://", redis_url="memory://")
    from idp import create_app
    from idp.notify.mail import MailNotSent, send_mail

    with create_app(dead_relay).test_request_context(), pytest.raises(MailNotSent):
        send_mail(EMAIL, "code de sécurité", "security_code", code="123456", minutes=15, expires="15 h")
    return [person.nir, OTHER_NIR, PASSWORD, EMAIL, code, auth_code, tokens["access_token"],
            tokens["refresh_token"], tokens["id_token"], rotated["refresh_token"], rp.secret]


def test_each_counter_moves_as_the_journey_did_and_no_line_holds_a_secret(app: Any, client: Any,
                                                                         mailbox: Any) -> None:
    _, before = _scrape(client)
    secrets = _journey(app, client, mailbox)
    text, after = _scrape(client)

    def moved(name: str, **labels: str) -> float:
        return _delta(before, after, name, **labels)

    assert moved("idp_logins_total", client_kind="web", step="password", outcome="wrong") == 3
    assert moved("idp_logins_total", client_kind="web", step="password", outcome="locked") == 1
    assert moved("idp_logins_total", client_kind="web", step="password", outcome="ok") == 1
    assert moved("idp_logins_total", client_kind="web", step="code", outcome="wrong") == 1
    assert moved("idp_logins_total", client_kind="web", step="code", outcome="ok") == 1
    assert moved("idp_security_codes_sent_total") == 1
    assert moved("idp_mail_failures_total") == 1
    assert moved("idp_locks_total", counter="pwd") == 1
    assert moved("idp_locks_total", counter="code") == 0
    assert moved("idp_token_grants_total", grant_type="authorization_code", outcome="ok") == 1
    assert moved("idp_token_grants_total", grant_type="refresh_token", outcome="ok") == 1
    assert moved("idp_token_grants_total", grant_type="refresh_token", outcome="invalid_grant") == 1
    assert moved("idp_http_request_duration_seconds_count", route="/connexion", method="POST", status="303") == 1
    assert moved("idp_http_request_duration_seconds_count", route="/token", method="POST", status="200") == 2
    routes = {dict(labels).get("route") for (_, labels) in after if dict(labels).get("route")}
    assert all(r == "unmatched" or r.startswith("/") for r in routes)
    lines = text.splitlines()
    compact = [re.sub(r"\s", "", s) for s in secrets]
    leaks = [line for line in lines for s in secrets + compact if s and s in line]
    assert not leaks, leaks[:3]


def test_metrics_need_the_bearer_token_once_one_is_configured(tmp_path: Any, clock: Any) -> None:
    from idp import create_app

    app = create_app(base_config(clock, None, metrics_token=TOKEN, database_url="sqlite://",
                                 redis_url="memory://"))
    client = app.test_client()
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer " + TOKEN[:-1] + "x"}).status_code == 404
    assert client.get("/metrics", headers={"Authorization": TOKEN}).status_code == 404  # not a bearer credential
    _scrape(client, Authorization="Bearer " + TOKEN)


def test_with_a_private_bind_address_the_application_does_not_serve_them(clock: Any) -> None:
    from idp import create_app

    app = create_app(base_config(clock, None, metrics_bind="127.0.0.1:9464", database_url="sqlite://",
                                 redis_url="memory://"))
    assert app.test_client().get("/metrics").status_code == 404


def test_production_refuses_a_short_metrics_token() -> None:
    from idp.errors import SettingsError
    from idp.settings import Settings, _validate_production

    with pytest.raises(SettingsError, match="IDP_METRICS_TOKEN"):
        _validate_production(Settings(env="production", secret_key="s" * 40, issuer="https://idp.example",
                                      redis_url="redis://r:6379/0", database_url="postgresql://db/idp",
                                      sms_backend="http", metrics_token="short"))


@pytest.mark.slow
def test_gunicorn_workers_add_up_on_the_masters_private_address(tmp_path: Any) -> None:
    """config/gunicorn.conf.py: multiprocess mode, and metrics_bind served by the master for all workers."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import requests

    from tests.conftest import TEST_SECRET
    from tests.resilience.harness import answers_200, wait_until

    port, metrics_port = free_port(), free_port()
    env = {**os.environ, "IDP_ENV": "development", "IDP_SECRET_KEY": TEST_SECRET, "IDP_ISSUER": f"http://127.0.0.1:{port}",
           "IDP_DATABASE_URL": f"sqlite:///{tmp_path}/idp.sqlite3", "IDP_BIND": f"127.0.0.1:{port}",
           "IDP_WORKERS": "2", "IDP_METRICS_BIND": f"127.0.0.1:{metrics_port}",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"), "IDP_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "idp:create_app()", "-c",
                                "config/gunicorn.conf.py"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)

    try:
        wait_until(lambda: answers_200(f"http://127.0.0.1:{port}/healthz"), timeout=40, what="gunicorn")
        for _ in range(30):  # spread over both workers by the kernel
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 404  # not on the app
        text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    finally:
        process.terminate()
        process.wait(timeout=20)
    counts = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith("idp_http_request_duration_seconds_count") and 'route="/healthz"' in line]
    assert sum(counts) >= 31, counts  # the start-up probes succeeded too; every worker's requests counted


def test_alert_rules_and_dashboard_name_only_metrics_the_idp_exposes() -> None:
    import json
    from pathlib import Path

    import yaml

    from idp import metrics

    exposed = {name for collector in (metrics.LOGINS, metrics.CODES_SENT, metrics.MAIL_FAILURES, metrics.LOCKS,
                                      metrics.WEBAUTHN, metrics.TOKEN_GRANTS, metrics.RFI_REQUESTS,
                                      metrics.RFI_LATENCY, metrics.HTTP_DURATION)
               for family in collector.describe() for name in _sample_names(family)}
    config = Path(__file__).resolve().parents[2] / "config"
    rules = yaml.safe_load((config / "prometheus/alerts.yml").read_text())["groups"][0]["rules"]
    assert {r["alert"] for r in rules} == {"IdpLockStorm", "IdpMailFailures", "IdpRfiBreakerOpen", "IdpHttp5xxRate"}
    dashboard = json.loads((config / "grafana/dashboards/idp.json").read_text())
    expressions = [r["expr"] for r in rules] + [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    for expr in expressions:
        named = set(re.findall(r"\bidp_[a-z_]+", expr))
        assert named and named <= exposed, (expr, named - exposed)


def _sample_names(family: Any) -> set[str]:
    if family.type == "histogram":
        return {family.name + suffix for suffix in ("_bucket", "_count", "_sum")}
    return {family.name + "_total" if family.type == "counter" else family.name}
