"""TLS for the managed store where it listens beyond loopback (SSH mode).

The store's password and every service's GCS tables would otherwise cross the network
in clear text. headway makes its own small CA once per cloud: a CA certificate (shipped
to the hosts, so a head can verify the store) and a server certificate whose names are
every address the store is reached at (loopback for headway itself, ``store_address``
for the hosts). Made with ``cryptography`` (already installed with paramiko): no
``openssl`` command, no key on any command line.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from headway.store.store_conf import TlsFiles
from headway.system import paths

VALID_DAYS = 3650


_CA_USAGE = x509.KeyUsage(
    digital_signature=True,
    key_cert_sign=True,
    crl_sign=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    encipher_only=False,
    decipher_only=False,
)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _alt_names(hosts: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for h in hosts:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            out.append(x509.DNSName(h))
    return out


def ensure(folder: Path, hosts: list[str]) -> TlsFiles:
    """The CA and server certificate in ``folder`` (made once; kept across restarts)."""
    files = TlsFiles(ca=str(folder / "ca.pem"), cert=str(folder / "store.pem"), key=str(folder / "store.key"))
    if all(Path(f).exists() for f in (files.ca, files.cert, files.key)):
        return files
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("headway store CA"))
        .issuer_name(_name("headway store CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("headway managed store"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(_alt_names(hosts)), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths.private_dir(folder)
    paths.write_private(Path(files.key), _pem_key(key))
    paths.write_private(Path(files.cert), cert.public_bytes(serialization.Encoding.PEM))
    paths.write_private(Path(files.ca), ca.public_bytes(serialization.Encoding.PEM))
    return files
