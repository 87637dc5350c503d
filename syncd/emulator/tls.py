"""TLS for the emulator: a server context from given files, or from a throwaway CA it makes itself.

`--tls-self-signed [DIR]` (default DIR: `<--data>/tls`) keeps four files there:

  ca.pem           the CA certificate: the one file a client must trust
                   (SSL_CERT_FILE, REQUESTS_CA_BUNDLE, NODE_EXTRA_CA_CERTS, curl --cacert)
  ca-key.pem       its private key (0600), kept so that a later run can sign a
                   new server certificate that clients already trust
  server.pem       the server certificate, signed by the CA
  server-key.pem   its private key (0600)

They are made on first use and reused while they are valid for at least another
day and the server certificate names every host asked for; a server certificate
missing a name is re-issued by the same CA. Keys are ECDSA P-256 (fast to make,
accepted by OpenSSL, Go, Node and Java clients). The certificates carry what
strict verifiers require (Python 3.13's VERIFY_X509_STRICT, Go's crypto/x509):
a critical basicConstraints, keyUsage, subject/authority key identifiers,
serverAuth and subjectAltName entries for every name.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: The names a client may reach the emulator under: loopback, and Box's own hosts
#: (pointed at the emulator through /etc/hosts or a resolver).
DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1", "api.box.com", "upload.box.com", "dl.boxcloud.com",
                 "app.box.com", "account.box.com")
CA_LIFETIME = datetime.timedelta(days=3650)
SERVER_LIFETIME = datetime.timedelta(days=397)  # the longest lifetime browsers and Apple clients accept
RENEW_BEFORE = datetime.timedelta(days=1)


class TlsError(ValueError):
    """The TLS files cannot be used; the message says which and why."""


@dataclass(frozen=True)
class TlsFiles:
    """Where a server certificate, its key and (when the emulator made it) the CA are."""

    cert: Path
    key: Path
    ca: Path | None = None


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """An SSLContext serving `files` (TLS 1.2+, ALPN http/1.1); TlsError if they do not load."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(files.cert, files.key)
    except FileNotFoundError as exc:
        raise TlsError(f"TLS file not found: {exc.filename}") from None
    except (ssl.SSLError, OSError) as exc:
        raise TlsError(f"cannot load the TLS certificate {files.cert} with key {files.key}: {exc}") from None
    return context


def self_signed(directory: Path, extra_names: tuple[str, ...] = ()) -> TlsFiles:
    """Make (or reuse) a throwaway CA and a server certificate in `directory`; see the module docstring."""
    directory.mkdir(parents=True, exist_ok=True)
    names = tuple(dict.fromkeys((*DEFAULT_NAMES, *extra_names)))
    now = datetime.datetime.now(datetime.timezone.utc)
    files = TlsFiles(directory / "server.pem", directory / "server-key.pem", directory / "ca.pem")
    ca_key_path = directory / "ca-key.pem"
    assert files.ca is not None
    loaded = _load_ca(files.ca, ca_key_path, now)
    if loaded is None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _ca_certificate(ca_key, now)
        _write_key(ca_key_path, ca_key)
        _write(files.ca, ca_cert.public_bytes(serialization.Encoding.PEM))
    else:
        ca_cert, ca_key = loaded
    if not _server_usable(files, ca_cert, names, now):
        key = ec.generate_private_key(ec.SECP256R1())
        _write_key(files.key, key)
        _write(files.cert, _server_certificate(key, ca_cert, ca_key, names, now)
               .public_bytes(serialization.Encoding.PEM))
    return files


def _load_ca(cert_path: Path, key_path: Path,
             now: datetime.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or cert.not_valid_after_utc - RENEW_BEFORE < now:
        return None
    if cert.public_key().public_numbers() != key.public_key().public_numbers():
        return None
    return cert, key


def _server_usable(files: TlsFiles, ca_cert: x509.Certificate, names: tuple[str, ...],
                   now: datetime.datetime) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    except (OSError, ValueError):
        return False
    if cert.issuer != ca_cert.subject or cert.not_valid_after_utc - RENEW_BEFORE < now:
        return False
    try:
        cert.verify_directly_issued_by(ca_cert)
        present = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, x509.InvalidSignature, x509.ExtensionNotFound):
        return False
    if not isinstance(key, ec.EllipticCurvePrivateKey) or \
            cert.public_key().public_numbers() != key.public_key().public_numbers():
        return False
    return set(_alt_names(names)) <= set(present)


def _alt_names(names: tuple[str, ...]) -> list[x509.GeneralName]:
    result: list[x509.GeneralName] = []
    for name in names:
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            result.append(x509.DNSName(name))
    return result


def _ca_certificate(key: ec.EllipticCurvePrivateKey, now: datetime.datetime) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "syncd emulator throwaway CA"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "syncd emulator")])
    public = key.public_key()
    return (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256()))


def _server_certificate(key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
                        ca_key: ec.EllipticCurvePrivateKey, names: tuple[str, ...],
                        now: datetime.datetime) -> x509.Certificate:
    public = key.public_key()
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_cert.subject).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(min(now + SERVER_LIFETIME, ca_cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(_alt_names(names)), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    _write(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()), mode=0o600)


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` atomically: a concurrent reader sees the old file or the new one."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(temp, mode)
    os.replace(temp, path)
