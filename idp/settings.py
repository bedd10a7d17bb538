"""One typed settings object for the whole identity provider.

Every setting lives here with its default, its unit and the reason for it. Values are read, in
order of precedence (last wins):

1. the defaults below;
2. an optional TOML file named by ``IDP_CONFIG`` (top-level keys are the field names);
3. ``IDP_<FIELD NAME IN UPPER CASE>`` environment variables;
4. ``create_app(test_config=...)`` overrides (tests only).

The result is validated once at start-up (:func:`load_settings`). Outside development the
insecure defaults that make ``make run`` work on a fresh machine are refused, each with a message
naming the setting (anchor: node-oidc-provider ``lib/helpers/defaults.js``).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from idp.errors import SettingsError

DEV_SECRET_KEY = "development-only-secret-key-do-not-use-in-production"
MONTH = 30 * 24 * 3600


def _doc(text: str, *, default: Any) -> Any:
    """Declare a field with its default and its documentation (shown by ``idp settings``)."""
    return field(default=default, metadata={"doc": text})


@dataclass(frozen=True, slots=True)
class Settings:
    """All the settings; durations are in seconds unless the name says otherwise."""

    # --- deployment -------------------------------------------------------------------------
    env: Literal["development", "production"] = _doc(
        "development enables the demo helpers (mailbox page, demo RP); production refuses insecure values.",
        default="development",
    )
    issuer: str = _doc("Public https URL of the provider; `iss` of every token.", default="http://127.0.0.1:5000")
    secret_key: str = _doc(
        "At least 32 random characters; signs sessions and CSRF tokens and derives the data keys.",
        default=DEV_SECRET_KEY,
    )
    data_key: str = _doc(
        "Optional separate key (32+ chars) for NIR look-up HMAC and field encryption; derived from secret_key "
        "when empty. Changing it makes stored NIRs unreadable: rotate with a migration, not by hand.",
        default="",
    )
    database_url: str = _doc("SQLAlchemy URL; SQLite file instance/idp.sqlite3 by default, PostgreSQL in production.",
                             default="sqlite:///idp.sqlite3")
    redis_url: str = _doc(
        "memory:// (in-process fakeredis, development and unit tests), redis://[:password@]host:port/db, "
        "rediss:// (TLS), redis+sentinel://[:password@]h1:26379,h2:26379/MASTER/DB (Sentinel-managed primary; "
        "the password is the data nodes'), redis+cluster://[:password@]h1:7000,h2:7001 (Redis Cluster, any seeds).",
        default="memory://")
    redis_tls_ca_file: str = _doc("PEM CA bundle that signs the Redis servers' certificates (rediss://, and "
                                  "TLS Sentinel/Cluster); empty: the system store.", default="")
    redis_tls_cert_file: str = _doc("Client certificate (PEM) presented to Redis over TLS (mutual TLS).", default="")
    redis_tls_key_file: str = _doc("Private key (PEM) of redis_tls_cert_file.", default="")
    redis_tls: bool = _doc("TLS to the data nodes of redis+sentinel:// and redis+cluster:// URLs (rediss:// "
                           "already means TLS).", default=False)
    redis_sentinel_password: str = _doc("Password of the Sentinel processes themselves (redis+sentinel://).",
                                        default="")
    redis_sentinel_tls: bool = _doc("TLS to the Sentinel processes.", default=False)
    redis_wait_replicas: int = _doc(
        "Replicas that must acknowledge a security write (failure counter, lock, code quota, used code) before "
        "the guarded action goes on (Redis WAIT); 0: no wait (one server). Unacknowledged: the action fails "
        "closed (503), so a failover never forgets a counted guess.", default=0)
    redis_wait_timeout: int = _doc("Milliseconds to wait for those acknowledgements.", default=500)
    redis_prefix: str = _doc("Prefix of every Redis key (lets several deployments or test runs share a server).",
                             default="idp:")
    log_level: str = _doc("Python logging level name.", default="INFO")
    dev_allow_remote_issuer: bool = _doc(
        "Development refuses an issuer that is not loopback (its mailbox page shows codes and SMS to anyone "
        "who reaches it) unless this is set, for a development machine on a private network.", default=False)
    proxy_hops: int = _doc("Number of trusted reverse proxies in front (X-Forwarded-For/Proto hops).", default=0)

    metrics_token: str = _doc(
        "Bearer token (32+ random characters) that a Prometheus scraper presents to read /metrics on the "
        "application; empty: /metrics is open in development and absent in production.", default="")
    metrics_bind: str = _doc(
        "host:port where the gunicorn master serves the metrics of every worker (a private address: no "
        "token asked); /metrics on the application then needs metrics_token. Empty: not served there.",
        default="")

    # --- mail and SMS -----------------------------------------------------------------------
    smtp_host: str = _doc("SMTP relay host.", default="127.0.0.1")
    smtp_port: int = _doc("SMTP relay port.", default=8025)
    smtp_use_tls: bool = _doc("STARTTLS to the relay (required in production, see smtp_allow_plaintext).",
                              default=False)
    smtp_allow_plaintext: bool = _doc(
        "Production accepts a relay without TLS only with this set: a relay on the same host or pod (the "
        "messages carry security codes and reset links).", default=False)
    smtp_ca_file: str = _doc(
        "PEM file of the CA(s) that sign the relay's certificate, for a private CA (empty: the system's trust "
        "store). With TLS the relay's certificate and host name are always verified.", default="")
    smtp_username: str = _doc("SMTP login (empty: none).", default="")
    smtp_password: str = _doc("SMTP password.", default="")
    smtp_timeout: float = _doc("Seconds before an SMTP connection or command is given up.", default=10.0)
    mail_sender: str = _doc("From: address of every e-mail.", default="Mon compte ameli <ne-pas-repondre@ameli.local>")
    sms_backend: Literal["dev", "http"] = _doc("dev shows SMS in the development mailbox; http posts to sms_url.",
                                               default="dev")
    sms_url: str = _doc("HTTP SMS gateway endpoint (sms_backend=http).", default="")

    # --- identity registry (RFI) ------------------------------------------------------------
    rfi_backend: Literal["sql", "http"] = _doc("sql: embedded registry table; http: REST registry at rfi_url.",
                                               default="sql")
    rfi_url: str = _doc("Base URL of the REST registry (GET {rfi_url}/individus/{nir}).", default="")
    rfi_connect_timeout: float = _doc("Seconds to connect to the registry.", default=2.0)
    rfi_read_timeout: float = _doc("Seconds to wait for the registry's answer.", default=3.0)
    rfi_retries: int = _doc("Retries after the first attempt on timeouts and 5xx.", default=2)
    rfi_backoff: float = _doc("Base of the exponential backoff between retries (seconds).", default=0.1)
    rfi_breaker_threshold: int = _doc("Consecutive failures that open the circuit breaker.", default=5)
    rfi_breaker_reset: int = _doc("Seconds the breaker stays open before one trial request.", default=30)

    # --- seed rules -------------------------------------------------------------------------
    email_code_ttl: int = _doc("Validity of an e-mailed security code (seed: 15 minutes).", default=15 * 60)
    email_code_quota: int = _doc("Codes per sliding window per account (seed: 5).", default=5)
    email_code_quota_window: int = _doc("Sliding window of the code quota (seed: 1 hour).", default=3600)
    email_code_quota_block: int = _doc("Code requests blocked this long after the quota is passed (seed: 1 h).",
                                       default=3600)
    max_failed_attempts: int = _doc("Wrong passwords, or wrong codes, that lock the account (seed: 3).", default=3)
    lockout_duration: int = _doc("How long a lock lasts (seed: 15 minutes).", default=15 * 60)
    trusted_browser_ttl: int = _doc("Life of a trusted browser (seed: 6 months).", default=6 * MONTH)
    biometric_ttl: int = _doc("Life of a WebAuthn platform credential (seed: 6 months).", default=6 * MONTH)
    address_failure_limit: int = _doc(
        "Failed logins from one client address per window before that address is slowed down with a "
        "French 'trop de tentatives' page (protects accounts from cheap lock-out by one attacker).",
        default=30,
    )
    address_failure_window: int = _doc("Window of address_failure_limit.", default=15 * 60)

    # --- sessions and interactions ----------------------------------------------------------
    interaction_ttl: int = _doc("Time to finish a login interaction.", default=30 * 60)
    session_idle_timeout: int = _doc("Browser session ends after this long without use.", default=30 * 60)
    session_absolute_timeout: int = _doc("Browser session ends this long after login, whatever happens.",
                                         default=12 * 3600)
    remember_nir_ttl: int = _doc("Life of the 'Mémoriser mon numéro' cookie.", default=13 * MONTH)

    # --- accounts ---------------------------------------------------------------------------
    password_min_length: int = _doc("Minimum password length (NIST SP 800-63B: 8 with MFA).", default=8)
    password_max_length: int = _doc("Maximum accepted length (no truncation below it).", default=256)
    argon2_time_cost: int = _doc("argon2id iterations.", default=2)
    argon2_memory_cost: int = _doc("argon2id memory in KiB (OWASP: 19 MiB minimum).", default=19 * 1024)
    argon2_parallelism: int = _doc("argon2id lanes.", default=1)
    password_reset_ttl: int = _doc("Validity of an e-mailed password-reset link (seed: 30 minutes).", default=1800)
    provisional_code_ttl: int = _doc("Validity of an SMS provisional code for re-creation.", default=1800)
    account_creation_attempts: int = _doc("Identity checks per window per address during account creation.",
                                          default=5)
    account_creation_window: int = _doc("Window of account_creation_attempts.", default=3600)

    # --- OpenID Connect ---------------------------------------------------------------------
    authorization_code_ttl: int = _doc("Authorization code life.", default=60)
    access_token_ttl: int = _doc("Access token life.", default=600)
    id_token_ttl: int = _doc("ID token life.", default=600)
    refresh_token_ttl: int = _doc("Absolute life of a refresh-token family.", default=30 * 24 * 3600)
    federation_code_ttl: int = _doc("Authorization code life for FranceConnect-style clients.", default=30)
    federation_access_token_ttl: int = _doc("Access token life for FranceConnect-style clients.", default=60)
    signing_alg: Literal["RS256", "ES256"] = _doc("Default ID token signing algorithm.", default="RS256")
    key_retire_after: int = _doc("A retired key stays published this long (covers what it signed).",
                                 default=2 * 24 * 3600)
    # The factor -> acr mapping (idp.login.assurance; README "Assurance rules"). Defaults follow NIST SP 800-63B-4:
    # e-mail is not an accepted out-of-band authenticator (§3.1.3.1), so password + e-mail code is no stronger
    # than the password; a platform credential with user verification is a phishing-resistant multi-factor
    # authenticator, but it is never worth more than the login that activated it (§4.1, binding).
    acr_password: Literal["eidas1", "eidas2", "eidas3"] = _doc(
        "acr of a one-factor login (password, or a credential activated in a one-factor login).", default="eidas1")
    acr_email_code: Literal["eidas1", "eidas2", "eidas3"] = _doc(
        "acr of password + e-mail security code (to an address validated before the login). eidas1 by default "
        "(NIST SP 800-63B-4: e-mail is no out-of-band authenticator); eidas2 if your trust framework accepts it.",
        default="eidas1")
    acr_platform: Literal["eidas1", "eidas2", "eidas3"] = _doc(
        "Highest acr of a sign-in with a platform credential activated in a two-factor login; capped by the acr "
        "that activation login had.", default="eidas2")
    backchannel_logout_timeout: float = _doc("Seconds per back-channel logout delivery.", default=3.0)

    # --- WebAuthn ---------------------------------------------------------------------------
    webauthn_rp_id: str = _doc("WebAuthn RP ID (registrable domain of the issuer); derived when empty.", default="")
    webauthn_rp_name: str = _doc("Name shown by the authenticator.", default="Mon compte ameli")
    webauthn_require_attestation: bool = _doc("Refuse 'none' attestation.", default=False)
    webauthn_challenge_ttl: int = _doc("Life of a WebAuthn challenge.", default=300)
    webauthn_attestation_roots: str = _doc(
        "PEM bundle of trusted attestation roots (with webauthn_require_attestation); empty: only the Apple and "
        "Google roots shipped with py_webauthn are trusted.", default="")

    security_reauth_ttl: int = _doc(
        "After re-authenticating with the security code on 'Sécurité de mon compte', changes are allowed this long "
        "(whatever the session's age, a change always needs a fresh code first).", default=300)

    # --- advisors' console (/conseiller/) --------------------------------------------------
    advisor_session_idle_timeout: int = _doc(
        "An advisor's console session ends after this long without use (staff session, shorter than a person's).",
        default=15 * 60)
    advisor_session_absolute_timeout: int = _doc("An advisor's console session ends this long after sign-in.",
                                                 default=8 * 3600)
    advisor_enrolment_ttl: int = _doc("Validity of the one-time enrolment link printed by `idp advisors create`.",
                                      default=72 * 3600)
    advisor_password_min_length: int = _doc("Minimum length of an advisor's password (staff accounts reach "
                                            "every person's account: longer than people's).", default=12)
    advisor_search_limit: int = _doc("Account searches (by NIR) one advisor may make per window.", default=60)
    advisor_search_window: int = _doc("Window of advisor_search_limit.", default=3600)
    advisor_sms_limit: int = _doc("Provisional codes the advisors' console and the operator CLI may text to one "
                                  "person (identity), and to one mobile number whoever it is registered for, per "
                                  "sliding window; passing it blocks further texts to them for the window.",
                                  default=3)
    advisor_sms_window: int = _doc("Sliding window of advisor_sms_limit.", default=86400)
    advisor_sms_per_advisor: int = _doc("Provisional codes one advisor may text per sliding window, all people "
                                        "together (a stolen advisor session cannot flood phones).", default=20)
    advisor_sms_per_advisor_window: int = _doc("Sliding window of advisor_sms_per_advisor.", default=3600)
    staff_oidc_metadata_url: str = _doc(
        "Discovery URL (.well-known/openid-configuration) of the organisation's staff OpenID provider; empty: "
        "advisors sign in only with password + security key.", default="")
    staff_oidc_client_id: str = _doc("client_id of this console at the staff OpenID provider.", default="")
    staff_oidc_client_secret: str = _doc("client_secret of this console at the staff OpenID provider.", default="")
    staff_oidc_role_claim: str = _doc("ID token claim (string or list) that holds the staff member's role.",
                                      default="role")
    staff_oidc_advisor_role: str = _doc("Value of the role claim that makes an advisor.", default="advisor")
    staff_oidc_supervisor_role: str = _doc("Value of the role claim that makes a supervisor.", default="supervisor")

    # --- retention (idp.retention) ----------------------------------------------------------
    audit_retention_days: int = _doc("Audit events are kept this many days: `idp audit purge` refuses a later date.",
                                     default=365)

    # ----------------------------------------------------------------------------------------
    @property
    def is_production(self) -> bool:
        """True outside development."""
        return self.env == "production"

    @property
    def secure_cookies(self) -> bool:
        """__Host- cookies with Secure, and HSTS, whenever the issuer is https."""
        return self.issuer.startswith("https://")

    @property
    def rp_id(self) -> str:
        """The WebAuthn RP ID: the setting, or the issuer's host."""
        return self.webauthn_rp_id or (urlsplit(self.issuer).hostname or "localhost")

    @property
    def origin(self) -> str:
        """scheme://host[:port] of the issuer (WebAuthn expected origin)."""
        parts = urlsplit(self.issuer)
        return f"{parts.scheme}://{parts.netloc}"

    def doc(self) -> dict[str, str]:
        """Field name -> documentation, for ``idp settings``."""
        return {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(self)}


FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
_HINTS = typing.get_type_hints(Settings)


def _convert(name: str, raw: Any, source: str) -> Any:
    """Turn a raw TOML or environment value into the field's type, or raise a SettingsError naming it."""
    hint = _HINTS[name]
    origin = typing.get_origin(hint)
    label = f"{source}{name.upper() if source == 'IDP_' else name}"
    if origin is Literal:
        allowed = typing.get_args(hint)
        if raw not in allowed:
            raise SettingsError(label, f"must be one of {', '.join(map(str, allowed))}, got {raw!r}")
        return raw
    try:
        if hint is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
        if hint is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError(raw)
            return int(str(raw).strip())
        if hint is float:
            return float(str(raw).strip())
        if hint is str:
            if not isinstance(raw, str | int | float) or isinstance(raw, bool):
                raise ValueError(raw)
            return str(raw)
    except (TypeError, ValueError):
        kind = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}[hint]
        raise SettingsError(label, f"expected {kind}, got {raw!r}") from None
    raise SettingsError(label, f"unsupported type {hint!r}")  # pragma: no cover - programming error


def _from_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise SettingsError("IDP_CONFIG", f"file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError("IDP_CONFIG", f"{path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise SettingsError("IDP_CONFIG", f"unknown setting(s) in {path}: {', '.join(unknown)}")
    return {k: _convert(k, v, "") for k, v in data.items()}


def _from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    values = {}
    for name in FIELDS:
        key = f"IDP_{name.upper()}"
        if key in environ:
            values[name] = _convert(name, environ[key], "IDP_")
    return values


def load_settings(overrides: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Build and validate the settings from defaults, ``IDP_CONFIG``, ``IDP_*`` and overrides."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    if environ.get("IDP_CONFIG"):
        values.update(_from_toml(environ["IDP_CONFIG"]))
    values.update(_from_environ(environ))
    for key, raw in (overrides or {}).items():
        if key not in FIELDS:
            raise SettingsError(key, "unknown setting")
        values[key] = _convert(key, raw, "")
    settings = Settings(**values)
    validate(settings)
    return settings


REDIS_SCHEMES = ("memory://", "redis://", "rediss://", "unix://", "redis+sentinel://", "redis+cluster://")
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

# Counts where zero is meaningful (no proxy in front, no retry); every other number must be positive.
_MAY_BE_ZERO = frozenset({"proxy_hops", "rfi_retries", "redis_wait_replicas"})


def validate(s: Settings) -> None:
    """Refuse inconsistent values always, and insecure ones in production."""
    for name, hint in _HINTS.items():
        if hint not in (int, float):
            continue
        if name in _MAY_BE_ZERO and getattr(s, name) < 0:
            raise SettingsError(f"IDP_{name.upper()}", "must be zero or more")
        if name not in _MAY_BE_ZERO and getattr(s, name) <= 0:
            raise SettingsError(f"IDP_{name.upper()}", "must be greater than zero")
    if not urlsplit(s.issuer).scheme or not urlsplit(s.issuer).netloc or s.issuer.endswith("/"):
        raise SettingsError("IDP_ISSUER", f"must be an absolute URL without a trailing slash, got {s.issuer!r}")
    if s.rfi_backend == "http" and not s.rfi_url.startswith(("http://", "https://")):
        raise SettingsError("IDP_RFI_URL", "is required with IDP_RFI_BACKEND=http")
    if not s.redis_url.startswith(REDIS_SCHEMES):
        raise SettingsError("IDP_REDIS_URL", "must be memory://, redis://, rediss://, redis+sentinel:// or "
                                             f"redis+cluster://, got {s.redis_url.split('@')[-1]!r}")
    if "{" in s.redis_prefix or "}" in s.redis_prefix:
        raise SettingsError("IDP_REDIS_PREFIX", "must not contain { or } (they are Redis Cluster hash tags)")
    host = urlsplit(s.issuer).hostname or ""
    if not s.is_production and not _is_loopback(host) and not s.dev_allow_remote_issuer:
        # A forgotten IDP_ENV must not expose the development mailbox, demo RP and clock file on a real host.
        raise SettingsError("IDP_ENV", f"is development but the issuer {s.issuer} is not a loopback address; "
                                       "set IDP_ENV=production (or IDP_DEV_ALLOW_REMOTE_ISSUER=true on a "
                                       "private development network)")
    if s.is_production:
        _validate_production(s)


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host in _LOCAL_HOSTS or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _validate_transport(s: Settings) -> None:
    """Production: every outbound channel that carries personal data or codes is encrypted."""
    if s.rfi_backend == "http" and not s.rfi_url.startswith("https://"):
        raise SettingsError("IDP_RFI_URL", "must be an https:// URL in production (the registry answers identities)")
    if s.sms_backend == "http" and not s.sms_url.startswith("https://"):
        raise SettingsError("IDP_SMS_URL", "must be an https:// URL in production (SMS carry codes)")
    if not s.smtp_use_tls and not s.smtp_allow_plaintext:
        raise SettingsError("IDP_SMTP_USE_TLS", "must be true in production (e-mails carry codes and reset "
                                                "links); IDP_SMTP_ALLOW_PLAINTEXT=true for a relay on the same host")
    host = (urlsplit(s.issuer).hostname or "").lower()
    rp_id = s.rp_id.lower()
    if rp_id != host and not host.endswith("." + rp_id):
        raise SettingsError("IDP_WEBAUTHN_RP_ID", f"{s.rp_id!r} is neither the issuer's host {host!r} nor a parent "
                                                  "domain of it (browsers would refuse every ceremony)")


def _validate_production(s: Settings) -> None:
    if len(s.secret_key) < 32 or s.secret_key == DEV_SECRET_KEY:
        raise SettingsError("IDP_SECRET_KEY", "must be at least 32 random characters in production")
    if s.data_key and len(s.data_key) < 32:
        raise SettingsError("IDP_DATA_KEY", "must be at least 32 random characters in production")
    if not s.issuer.startswith("https://"):
        raise SettingsError("IDP_ISSUER", "must be an https:// URL in production")
    if s.redis_url.startswith("memory://"):
        raise SettingsError("IDP_REDIS_URL", "memory:// keeps state in one process; use a Redis server in production")
    if s.redis_url.startswith(("redis+sentinel://", "redis+cluster://")) and s.redis_wait_replicas < 1:
        raise SettingsError("IDP_REDIS_WAIT_REPLICAS", "must be at least 1 with a Sentinel-managed Redis or a Redis "
                            "Cluster: without a replica's acknowledgement a failover forgets the guesses, locks and "
                            "quotas that only the old primary held (a primary without replicas waits for none)")
    if s.database_url.startswith("sqlite"):
        raise SettingsError("IDP_DATABASE_URL", "SQLite is for development; use PostgreSQL in production")
    if s.staff_oidc_metadata_url and not s.staff_oidc_metadata_url.startswith("https://"):
        raise SettingsError("IDP_STAFF_OIDC_METADATA_URL", "must be an https:// URL in production")
    if s.staff_oidc_metadata_url and not (s.staff_oidc_client_id and s.staff_oidc_client_secret):
        raise SettingsError("IDP_STAFF_OIDC_CLIENT_SECRET", "client id and secret are required with a staff provider")
    if s.metrics_token and len(s.metrics_token) < 32:
        raise SettingsError("IDP_METRICS_TOKEN", "must be at least 32 random characters in production")
    if s.sms_backend == "dev":
        raise SettingsError("IDP_SMS_BACKEND", "the dev backend only shows SMS on a development page")
    _validate_transport(s)

