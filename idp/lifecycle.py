"""Account lifecycle events (blinker signals, which Flask already depends on).

The accounts area publishes each event once, after its change is committed; every area that holds
something an event must take back subscribes in its own ``init_app`` (anchor: Flask signals; Kratos hooks),
so that ``idp.accounts`` does not import sessions, tokens or credentials to revoke them.

Every signal is sent with the account id as the sender. Subscribers today:

- ``password_changed`` (``keep_session``: the browser session that made the change, kept): browser sessions,
  logins in flight, access and refresh tokens, WebAuthn credentials, trusted browsers, reset links;
- ``account_reset`` (advisor reset; the account row is gone): the same, plus locks, quotas and pending codes;
- ``account_disabled`` (``idp accounts disable``; the account row stays, its status is ``disabled``): browser
  sessions, logins in flight, access and refresh tokens, reset links, WebAuthn credentials, trusted browsers
  (what it proved before must not stay usable while it cannot sign in, nor come back when it is enabled: an
  account is disabled when it is thought taken over, and whoever held it may have enrolled their own phone);
- ``sessions_ended`` (``sessions``: the browser sessions that a password change, a reset, a disabling, the
  person's "end my other sessions" or an advisor ended at once): their relying parties get a back-channel
  logout (:mod:`idp.oidc.logout`), after the answer;
- ``email_changed`` (``previous``: the address validated before, or None; ``current``): reset links (they went
  to the previous address) end, and the previous address is told by e-mail.

Receivers must be module-level functions (blinker keeps weak references otherwise) and idempotent:
``create_app`` runs many times in one process, and blinker connects a function only once.
"""

from __future__ import annotations

from blinker import Namespace

_events = Namespace()

password_changed = _events.signal("account-password-changed")
account_reset = _events.signal("account-reset")
account_disabled = _events.signal("account-disabled")
email_changed = _events.signal("account-email-changed")
sessions_ended = _events.signal("browser-sessions-ended")

# Events after which nothing proved before may still count: sessions, logins in flight, tokens...
CREDENTIAL_EVENTS = (password_changed, account_reset, account_disabled)
