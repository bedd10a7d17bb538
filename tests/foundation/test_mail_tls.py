"""TLS to the SMTP relay verifies the relay: a man in the middle with a certificate nobody signed, or one
signed for another host, gets no security code. smtplib's own default (``starttls()`` without a context)
checks neither the certificate nor the name; the IdP passes a verifying context (``IDP_SMTP_CA_FILE`` for a
private CA). Every test runs a real aiosmtpd relay that requires STARTTLS.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from idp.notify import mail
from idp.notify.mail import MailNotSent, send_mail
from tests.conftest import base_config, free_port


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _certificate(subject: str, issuer_key: Any, issuer: str, key: Any, *, ca: bool,
                 names: list[x509.GeneralName]) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(path: Path, *items: Any) -> Path:
    chunks = []
    for item in items:
        if isinstance(item, x509.Certificate):
            chunks.append(item.public_bytes(serialization.Encoding.PEM))
        else:
            chunks.append(item.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    path.write_bytes(b"".join(chunks))
    return path


def _pki(tmp_path: Path, *, names: list[x509.GeneralName]) -> tuple[Path, Path]:
    """A private CA (its PEM) and a relay certificate signed by it for ``names`` (cert + key PEM)."""
    ca_key, relay_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("Test relay CA", ca_key, "Test relay CA", ca_key, ca=True, names=[])
    relay = _certificate("relay", ca_key, "Test relay CA", relay_key, ca=False, names=names)
    return _pem(tmp_path / "ca.pem", ca), _pem(tmp_path / "relay.pem", relay, relay_key)


LOOPBACK = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]


def _relay(chain: Path, received: list[bytes]) -> Any:
    from aiosmtpd.controller import Controller

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain)

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope.original_content or envelope.content)
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True)
    controller.start()
    return controller, port


@pytest.fixture
def received() -> Iterator[list[bytes]]:
    found: list[bytes] = []
    yield found
    mail.close_connection()


def _send(clock: Any, tmp_path: Path, port: int, **settings: Any) -> None:
    from idp import create_app

    app = create_app(base_config(clock, None, database_url=f"sqlite:///{tmp_path}/m.db", redis_url="memory://",
                                 smtp_port=port, smtp_use_tls=True, **settings))
    with app.app_context():
        send_mail("assuree@example.fr", "Votre code de sécurité", "security_code", code="123456", minutes=15,
                  expires="14 h 45")


def test_a_relay_whose_certificate_no_trusted_ca_signed_gets_no_security_code(
        clock: Any, tmp_path: Path, received: list[bytes]) -> None:
    _ca, chain = _pki(tmp_path, names=LOOPBACK)
    controller, port = _relay(chain, received)
    try:
        with pytest.raises(MailNotSent):
            _send(clock, tmp_path, port)  # the system trust store does not hold the test CA
    finally:
        controller.stop()
    assert received == []


def test_a_relay_signed_by_the_configured_ca_receives_the_code_over_tls(
        clock: Any, tmp_path: Path, received: list[bytes]) -> None:
    ca, chain = _pki(tmp_path, names=LOOPBACK)
    controller, port = _relay(chain, received)
    try:
        _send(clock, tmp_path, port, smtp_ca_file=str(ca))
    finally:
        controller.stop()
    assert len(received) == 1 and b"123456" in received[0]


def test_a_certificate_for_another_host_is_refused_even_from_the_configured_ca(
        clock: Any, tmp_path: Path, received: list[bytes]) -> None:
    ca, chain = _pki(tmp_path, names=[x509.DNSName("relay.example")])
    controller, port = _relay(chain, received)
    try:
        with pytest.raises(MailNotSent):
            _send(clock, tmp_path, port, smtp_ca_file=str(ca))
    finally:
        controller.stop()
    assert received == []
