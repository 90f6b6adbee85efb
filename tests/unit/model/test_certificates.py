"""An endpoint's certificate and key are judged from their text before anything changes:
each fault is named with what to do, and no byte of the key is ever repeated."""

from __future__ import annotations

import datetime
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from headway.model import certificates

NOW = time.time()
DAY = datetime.timedelta(days=1)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> str:
    enc = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc).decode()


def _cert(key: ec.EllipticCurvePrivateKey, start: datetime.datetime, end: datetime.datetime) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api.example.com")])
    san = x509.SubjectAlternativeName([x509.DNSName("api.example.com"), x509.DNSName("www.example.com")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(san, critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


NOW_DT = datetime.datetime.fromtimestamp(NOW, tz=datetime.UTC)
KEY = _key()
GOOD = _cert(KEY, NOW_DT - DAY, NOW_DT + 90 * DAY)


def test_a_pair_that_fits_names_what_it_serves_and_until_when():
    cert = certificates.check(GOOD, _pem_key(KEY), NOW)
    assert cert.names == ("api.example.com", "www.example.com")
    assert abs(cert.not_after - (NOW + 90 * 86400)) < 2
    chain = GOOD + _cert(_key(), NOW_DT - DAY, NOW_DT + DAY)  # an intermediate after the leaf
    assert certificates.check(chain, _pem_key(KEY), NOW).names == cert.names


@pytest.mark.parametrize(
    "cert,key,said",
    [
        (GOOD, _pem_key(_key()), "endpoint.tls.key does not match the certificate"),
        (_cert(KEY, NOW_DT - 9 * DAY, NOW_DT - DAY), _pem_key(KEY), "endpoint.tls.cert expired on "),
        (_cert(KEY, NOW_DT + DAY, NOW_DT + 9 * DAY), _pem_key(KEY), "endpoint.tls.cert is not valid before "),
        ("hello", _pem_key(KEY), "endpoint.tls.cert: not a PEM certificate"),
        (_pem_key(KEY), _pem_key(KEY), "endpoint.tls.cert: not a PEM certificate"),
        (GOOD, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "endpoint.tls.key: not a PEM private"),
        (GOOD, GOOD, "endpoint.tls.key: not a PEM private key"),
        (GOOD, _pem_key(KEY, b"sesame"), "endpoint.tls.key: the key is encrypted; give it without a passphrase"),
        (GOOD * 11, _pem_key(KEY), "11 certificates, more than 10"),
    ],
    ids=[
        "other key",
        "expired",
        "not yet valid",
        "text",
        "a key as cert",
        "bad key",
        "cert as key",
        "encrypted",
        "long",
    ],
)
def test_a_pair_that_cannot_serve_is_refused_with_the_reason(cert, key, said):
    with pytest.raises(certificates.CertificateError) as err:
        certificates.check(cert, key, NOW)
    assert said in str(err.value)
    body = "".join(key.splitlines()[1:-1])
    assert body[:40] not in str(err.value)


def test_a_deployed_certificate_is_described_by_its_names_and_end():
    cert = certificates.describe(GOOD)
    assert cert is not None and cert.names == ("api.example.com", "www.example.com")
    assert certificates.describe("not a certificate") is None
