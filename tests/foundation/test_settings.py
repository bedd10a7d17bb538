"""One typed settings object: defaults, TOML, IDP_* variables; insecure production values refused."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from idp.errors import SettingsError
from idp.settings import DEV_SECRET_KEY, load_settings

SECURE = {
    "IDP_ENV": "production",
    "IDP_ISSUER": "https://connexion.ameli.example",
    "IDP_SECRET_KEY": "s" * 48,
    "IDP_DATABASE_URL": "postgresql+psycopg://idp@db/idp",
    "IDP_REDIS_URL": "redis://cache:6379/0",
    "IDP_SMS_BACKEND": "http",
    "IDP_SMS_URL": "https://sms.example/send",
    "IDP_SMTP_USE_TLS": "true",
}


def test_defaults_run_a_development_idp_without_any_configuration():
    settings = load_settings(environ={})
    assert settings.env == "development"
    assert settings.redis_url == "memory://"
    assert settings.database_url.startswith("sqlite")
    assert (settings.email_code_ttl, settings.email_code_quota, settings.max_failed_attempts) == (900, 5, 3)
    assert settings.lockout_duration == 900 and settings.trusted_browser_ttl >= 180 * 86400


def test_a_secure_production_configuration_is_accepted():
    settings = load_settings(environ=SECURE)
    assert settings.is_production and settings.secure_cookies


@pytest.mark.parametrize(("variable", "value"), [
    ("IDP_SECRET_KEY", None),
    ("IDP_SECRET_KEY", "short"),
    ("IDP_SECRET_KEY", DEV_SECRET_KEY),
    ("IDP_ISSUER", "http://connexion.ameli.example"),
    ("IDP_REDIS_URL", "memory://"),
    ("IDP_DATABASE_URL", "sqlite:///idp.sqlite3"),
    ("IDP_SMS_BACKEND", "dev"),
    ("IDP_SMS_URL", "http://sms.example/send"),
    ("IDP_SMTP_USE_TLS", "false"),
    ("IDP_WEBAUTHN_RP_ID", "ameli.evil.example"),
    ("IDP_WEBAUTHN_RP_ID", "meli.example"),  # a suffix of the host, but not a parent domain
])
def test_production_refuses_each_insecure_value_naming_it(variable, value):
    environ = dict(SECURE)
    if value is None:
        environ.pop(variable)
    else:
        environ[variable] = value
    with pytest.raises(SettingsError) as caught:
        load_settings(environ=environ)
    assert caught.value.setting == variable
    assert variable in str(caught.value)


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("IDP_SMTP_PORT", "vingt-cinq", "whole number"),
    ("IDP_EMAIL_CODE_TTL", "15m", "whole number"),
    ("IDP_EMAIL_CODE_QUOTA", "0", "greater than zero"),
    ("IDP_RFI_RETRIES", "-1", "zero or more"),
    ("IDP_SMTP_USE_TLS", "peut-être", "true or false"),
    ("IDP_ENV", "staging", "one of development, production"),
    ("IDP_RFI_BACKEND", "ldap", "one of sql, http"),
    ("IDP_REDIS_URL", "mongodb://x", "memory://, redis://"),
    ("IDP_ISSUER", "connexion.ameli.fr", "absolute URL"),
])
def test_a_malformed_value_is_a_clear_error_naming_the_variable(variable, value, expected):
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={variable: value})
    assert caught.value.setting == variable
    assert expected in caught.value.message


def test_every_seed_number_is_read_from_its_idp_variable():
    environ = {"IDP_EMAIL_CODE_TTL": "600", "IDP_EMAIL_CODE_QUOTA": "4", "IDP_EMAIL_CODE_QUOTA_WINDOW": "1800",
               "IDP_EMAIL_CODE_QUOTA_BLOCK": "7200", "IDP_MAX_FAILED_ATTEMPTS": "5", "IDP_LOCKOUT_DURATION": "60",
               "IDP_TRUSTED_BROWSER_TTL": "86400", "IDP_BIOMETRIC_TTL": "172800"}
    s = load_settings(environ=environ)
    assert (s.email_code_ttl, s.email_code_quota, s.email_code_quota_window, s.email_code_quota_block) == \
        (600, 4, 1800, 7200)
    assert (s.max_failed_attempts, s.lockout_duration, s.trusted_browser_ttl, s.biometric_ttl) == \
        (5, 60, 86400, 172800)


def test_development_is_refused_with_a_public_https_issuer():
    """A forgotten IDP_ENV would expose the mailbox page, the demo RP and the clock file on a real host."""
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={"IDP_ISSUER": "https://connexion.ameli.example"})
    assert caught.value.setting == "IDP_ENV"
    assert load_settings(environ={"IDP_ISSUER": "https://localhost:8443"}).env == "development"


def test_zero_is_accepted_where_it_means_none():
    s = load_settings(environ={"IDP_RFI_RETRIES": "0", "IDP_PROXY_HOPS": "0"})
    assert (s.rfi_retries, s.proxy_hops) == (0, 0)


def test_toml_file_is_read_and_environment_wins_over_it(tmp_path):
    config = tmp_path / "idp.toml"
    config.write_text('issuer = "https://localhost:8443"\nemail_code_quota = 7\nsmtp_use_tls = true\n')
    s = load_settings(environ={"IDP_CONFIG": str(config), "IDP_EMAIL_CODE_QUOTA": "6"})
    assert s.issuer == "https://localhost:8443"
    assert s.smtp_use_tls is True
    assert s.email_code_quota == 6


@pytest.mark.parametrize(("content", "expected"), [
    ('issuer = "https://x.example"\nnot_a_setting = 1\n', "unknown setting(s)"),
    ("issuer = \n", "not valid TOML"),
    ("smtp_port = 'x'\n", "whole number"),
])
def test_a_bad_toml_file_is_a_clear_error(tmp_path, content, expected):
    config = tmp_path / "idp.toml"
    config.write_text(content)
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={"IDP_CONFIG": str(config)})
    assert expected in str(caught.value)


def test_the_command_line_prints_one_line_and_no_traceback_on_a_bad_value(tmp_path):
    env = {**os.environ, "IDP_SMTP_PORT": "abc", "IDP_CONFIG": ""}
    result = subprocess.run([sys.executable, "-m", "idp", "settings"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "Configuration error: IDP_SMTP_PORT" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_production_refusal_from_the_command_line_names_the_setting(tmp_path):
    env = {**os.environ, **SECURE, "IDP_REDIS_URL": "memory://", "IDP_CONFIG": ""}
    result = subprocess.run([sys.executable, "-m", "idp", "settings"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "IDP_REDIS_URL" in result.stderr and "Traceback" not in result.stderr


def test_production_refuses_an_http_registry_and_accepts_the_hardened_exceptions():
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={**SECURE, "IDP_RFI_BACKEND": "http", "IDP_RFI_URL": "http://rfi.internal/api"})
    assert caught.value.setting == "IDP_RFI_URL"
    relay = load_settings(environ={**SECURE, "IDP_SMTP_USE_TLS": "false", "IDP_SMTP_ALLOW_PLAINTEXT": "true"})
    assert relay.smtp_allow_plaintext and not relay.smtp_use_tls
    parent = load_settings(environ={**SECURE, "IDP_WEBAUTHN_RP_ID": "ameli.example"})
    assert parent.rp_id == "ameli.example"


@pytest.mark.parametrize("url", ["redis+sentinel://s1:26379,s2:26379,s3:26379/idp/0",
                                 "redis+cluster://r1:7000,r2:7001,r3:7002"])
def test_production_on_a_failover_topology_refuses_security_writes_no_replica_acknowledges(url):
    """A Sentinel or a Cluster failover promotes a replica: a lock or a counted guess only the old primary held
    would be forgotten (fresh guesses for an attacker who can cause one), unless a replica acknowledged it (WAIT)."""
    topology = {**SECURE, "IDP_REDIS_URL": url}
    with pytest.raises(SettingsError) as caught:
        load_settings(environ=topology)
    assert caught.value.setting == "IDP_REDIS_WAIT_REPLICAS"
    assert load_settings(environ={**topology, "IDP_REDIS_WAIT_REPLICAS": "1"}).redis_wait_replicas == 1


@pytest.mark.parametrize("issuer", ["http://192.168.1.20:5000", "http://idp.lan:5000", "https://connexion.ameli.example"])
def test_development_refuses_an_issuer_that_is_not_loopback_unless_explicitly_allowed(issuer):
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={"IDP_ISSUER": issuer})
    assert caught.value.setting == "IDP_ENV"
    allowed = load_settings(environ={"IDP_ISSUER": issuer, "IDP_DEV_ALLOW_REMOTE_ISSUER": "true"})
    assert allowed.env == "development"


@pytest.mark.parametrize("issuer", ["http://localhost:5000", "http://127.0.0.2:8000", "http://[::1]:5000",
                                    "http://idp.localhost"])
def test_development_starts_on_a_loopback_issuer(issuer):
    assert load_settings(environ={"IDP_ISSUER": issuer}).issuer == issuer
