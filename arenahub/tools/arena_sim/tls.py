"""A self-signed certificate for serving the simulator as ``https://arena.ai`` on this machine.

Browsers are pointed at the sim with ``--host-resolver-rules`` and started with HTTPS errors
ignored, so one self-signed certificate naming the site's hosts is enough. ``cryptography`` is an
optional dependency (the ``sim`` extra), imported only here and only when TLS is asked for.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

HOSTS = ("arena.ai", "lmarena.ai", "www.lmarena.ai", "localhost")
IPS = ("127.0.0.1",)


class TLSUnavailable(RuntimeError):
    pass


def self_signed(directory: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``cert.pem`` and ``key.pem`` (valid from a day ago for 30 days) into ``directory``."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError as exc:
        raise TLSUnavailable("serving the simulator over TLS needs the cryptography package: "
                             "pip install cryptography (into arenahub's environment)") from exc
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "arena.ai"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "arenahub simulator")])
    now = datetime.datetime.now(datetime.UTC)
    san = [x509.DNSName(h) for h in HOSTS] + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in IPS]
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path
