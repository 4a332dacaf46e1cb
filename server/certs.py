"""Certificates and keys for a deployed federation (``medgan certs``).

Two kinds of material, both made with ``cryptography``:

* TLS for the SuperLink: a private CA (``ca.crt``/``ca.key``) and a server certificate
  (``superlink.crt``/``superlink.key``) whose SANs always include ``127.0.0.1`` and
  ``localhost`` (the SuperLink's own ServerApp process connects to it over loopback) plus
  every ``--host`` the sites will dial. Sites receive ``ca.crt`` only.
* SuperNode authentication: one ECDSA P-384 key pair per site, in the OpenSSH formats
  Flower 1.41 reads (``flower-supernode --auth-supernode-private-key`` loads an OpenSSH
  private key; ``flwr supernode register`` loads an OpenSSH public key on a NIST curve).
  A site can make its own pair and send only ``<site>.pub`` to the coordinator.

Private keys are written 0600 in 0700 directories, and an existing file is never
replaced unless ``force`` is given: a silently regenerated CA or site key would lock every
site (or one site) out of a running federation.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "KeyExistsError",
    "SiteKeyFiles",
    "TlsFiles",
    "add_arguments",
    "create_site_key",
    "create_tls",
    "main",
]

logger = logging.getLogger(__name__)

_LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


class KeyExistsError(FileExistsError):
    """A key or certificate is already there and ``force`` was not given."""


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


@dataclass(frozen=True)
class SiteKeyFiles:
    private_key: Path
    public_key: Path


def create_tls(out_dir: str | Path, *, hosts: list[str] | tuple[str, ...] = (), days: int = 365,
               force: bool = False) -> TlsFiles:
    """Create a CA and a SuperLink server certificate signed by it.

    Args:
        out_dir: Directory for ``ca.crt``, ``ca.key``, ``superlink.crt``, ``superlink.key``.
        hosts: DNS names or IP addresses the sites use to reach the SuperLink; the
            loopback names are always added.
        days: Validity of both certificates.
        force: Replace existing files (every site must then receive the new ``ca.crt``).

    Raises:
        KeyExistsError: if any of the four files exists and ``force`` is false.
    """
    out = _private_dir(out_dir)
    files = TlsFiles(out / "ca.crt", out / "ca.key", out / "superlink.crt", out / "superlink.key")
    _refuse_existing([files.ca_cert, files.ca_key, files.server_cert, files.server_key], force)
    now = dt.datetime.now(dt.timezone.utc)
    not_before, not_after = now - dt.timedelta(minutes=5), now + dt.timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "medgan-federated CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA384())
    )

    server_key = ec.generate_private_key(ec.SECP384R1())
    all_hosts = list(dict.fromkeys([*_LOOPBACK_HOSTS, *hosts]))
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, all_hosts[-1])]))
        .issuer_name(ca_name).public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in all_hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA384())
    )

    _write_private(files.ca_key, _pem_key(ca_key))
    _write_public(files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_private(files.server_key, _pem_key(server_key))
    _write_public(files.server_cert, server_cert.public_bytes(serialization.Encoding.PEM))
    logger.info("TLS: CA %s and SuperLink certificate %s for %s (valid %d days)",
                files.ca_cert, files.server_cert, ", ".join(all_hosts), days)
    return files


def create_site_key(out_dir: str | Path, site: str, *, force: bool = False) -> SiteKeyFiles:
    """Create the SuperNode authentication key pair of one site.

    Writes ``<site>.key`` (OpenSSH private key, 0600) and ``<site>.pub`` (OpenSSH public
    key, the only file the coordinator needs).

    Raises:
        KeyExistsError: if either file exists and ``force`` is false.
        ValueError: if ``site`` is not a plain name.
    """
    if not site or Path(site).name != site or site.startswith("."):
        raise ValueError(f"site name {site!r} must be a plain file name such as 'site-a'")
    out = _private_dir(out_dir)
    files = SiteKeyFiles(out / f"{site}.key", out / f"{site}.pub")
    _refuse_existing([files.private_key, files.public_key], force)
    key = ec.generate_private_key(ec.SECP384R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH)
    _write_private(files.private_key, private)
    _write_public(files.public_key, public + f" {site}\n".encode())
    logger.info("site %s: SuperNode key %s (keep it at the site), public key %s (send to the coordinator)",
                site, files.private_key, files.public_key)
    return files


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _private_dir(path: str | Path) -> Path:
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(out, 0o700)
    return out


def _refuse_existing(paths: list[Path], force: bool) -> None:
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        raise KeyExistsError(
            "refusing to overwrite " + ", ".join(str(p) for p in existing)
            + "; sites and the coordinator may depend on them. Pass --force to replace them"
        )
    for path in existing:
        logger.warning("--force: replacing %s", path)


def _write_private(path: Path, data: bytes) -> None:
    # Created 0600 from the start (not chmod-ed afterwards): the key is never readable
    # by others, not even for an instant.
    if path.exists():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _write_public(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    os.chmod(path, 0o644)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``medgan certs tls ...`` and ``medgan certs site-key ...``."""
    sub = parser.add_subparsers(dest="certs_command", required=True)
    tls = sub.add_parser("tls", help="CA and SuperLink TLS certificate (coordinator)")
    tls.add_argument("--out", required=True, help="directory for ca.crt, ca.key, superlink.crt, superlink.key")
    tls.add_argument("--host", action="append", default=[],
                     help="name or IP the sites dial (repeatable); 127.0.0.1 and localhost are always included")
    tls.add_argument("--days", type=int, default=365)
    tls.add_argument("--force", action="store_true", help="replace existing files")
    site = sub.add_parser("site-key", help="SuperNode authentication key pair of one site")
    site.add_argument("--out", required=True, help="directory for SITE.key (private) and SITE.pub")
    site.add_argument("--site", required=True, action="append", help="site name (repeatable)")
    site.add_argument("--force", action="store_true", help="replace existing files")


def main(args: argparse.Namespace) -> int:
    """Run ``medgan certs``; an existing key is an error, never overwritten."""
    try:
        if args.certs_command == "tls":
            files = create_tls(args.out, hosts=args.host, days=args.days, force=args.force)
            print(f"CA certificate (give to every site): {files.ca_cert}\n"
                  f"CA key (keep offline):                {files.ca_key}\n"
                  f"SuperLink certificate and key:        {files.server_cert} {files.server_key}")
        else:
            for name in args.site:
                keys = create_site_key(args.out, name, force=args.force)
                print(f"{name}: private key (stays at the site) {keys.private_key}; "
                      f"public key (register at the coordinator) {keys.public_key}")
    except (KeyExistsError, ValueError) as error:
        logger.error("%s", error)
        return 2
    return 0
