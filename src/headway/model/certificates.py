"""What an endpoint's TLS certificate and key must be, judged from their text when they
are uploaded, before anything changes: a deploy with a key that does not fit, or a
certificate that has expired, is refused with the reason, and the running endpoint keeps
serving with the pair it has. Nothing here ever repeats a byte of the key.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

#: The most certificates one chain may hold (leaf and intermediates; a root is not needed).
MAX_CHAIN = 10


class CertificateError(ValueError):
    """The certificate or key cannot serve; the message says which and what to do."""


@dataclass(frozen=True)
class Certificate:
    """What the endpoint will present: the names it is valid for, and until when."""

    names: tuple[str, ...]
    not_after: float


def _public(key: object) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined]


def _day(t: datetime.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M UTC")


def _names(leaf: x509.Certificate) -> tuple[str, ...]:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(san.get_values_for_type(x509.DNSName)) + tuple(str(a) for a in san.get_values_for_type(x509.IPAddress))


#: A certificate closer than this to its end is said so by ``status``.
EXPIRY_WARNING_S = 14 * 86400


def describe(cert_pem: str) -> Certificate | None:
    """The names and end of the first certificate in ``cert_pem`` (None: there is none)."""
    try:
        leaf = x509.load_pem_x509_certificates(cert_pem.encode())[0]
    except (ValueError, IndexError):
        return None
    return Certificate(names=_names(leaf), not_after=leaf.not_valid_after_utc.timestamp())


def check(cert_pem: str, key_pem: str, now: float, what: str = "endpoint.tls") -> Certificate:
    """The leaf of ``cert_pem`` if ``key_pem`` is its key and it is valid at ``now``."""
    try:
        chain = x509.load_pem_x509_certificates(cert_pem.encode())
    except ValueError:
        raise CertificateError(
            f"{what}.cert: not a PEM certificate (it must hold '-----BEGIN CERTIFICATE-----'); give the "
            "certificate chain, leaf first"
        ) from None
    if len(chain) > MAX_CHAIN:
        raise CertificateError(
            f"{what}.cert: {len(chain)} certificates, more than {MAX_CHAIN}; give the leaf and its intermediates"
        )
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except TypeError:
        raise CertificateError(
            f"{what}.key: the key is encrypted; give it without a passphrase (openssl pkey -in KEY -out KEY.plain)"
        ) from None
    except (ValueError, x509.UnsupportedGeneralNameType):
        raise CertificateError(f"{what}.key: not a PEM private key; give the key of the certificate") from None
    leaf = chain[0]
    if _public(leaf.public_key()) != _public(key.public_key()):
        raise CertificateError(
            f"{what}.key does not match the certificate (the first one of {what}.cert); give the key it was made for"
        )
    moment = datetime.datetime.fromtimestamp(now, tz=datetime.UTC)
    if leaf.not_valid_after_utc <= moment:
        raise CertificateError(f"{what}.cert expired on {_day(leaf.not_valid_after_utc)}; renew it and deploy again")
    if leaf.not_valid_before_utc > moment:
        raise CertificateError(
            f"{what}.cert is not valid before {_day(leaf.not_valid_before_utc)}; "
            "check this machine's clock or the certificate"
        )
    return Certificate(names=_names(leaf), not_after=leaf.not_valid_after_utc.timestamp())
