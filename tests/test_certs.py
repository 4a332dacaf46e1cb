"""`medgan certs`: a CA and SuperLink certificate that verify, site keys in the formats
Flower 1.41 loads, private files 0600, and no silent overwrite."""

import ipaddress
import socket
import ssl
import stat
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_private_key

from server.certs import KeyExistsError, create_site_key, create_tls
from medgan_cli.main import main as medgan


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_server_certificate_is_signed_by_the_ca_for_loopback_and_given_hosts(tmp_path):
    files = create_tls(tmp_path / "certs", hosts=["coordinator.example.org", "10.1.2.3"])
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    server.verify_directly_issued_by(ca)  # raises if the signature or issuer is wrong
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "coordinator.example.org"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {ipaddress.ip_address("127.0.0.1"),
                                                            ipaddress.ip_address("10.1.2.3")}
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert _mode(files.ca_key) == _mode(files.server_key) == 0o600
    assert _mode(files.ca_cert) == 0o644
    assert _mode(tmp_path / "certs") == 0o700


def test_tls_handshake_on_loopback_verifies_against_the_ca(tmp_path):
    files = create_tls(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(files.server_cert, files.server_key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(b"ok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client_ctx = ssl.create_default_context(cafile=str(files.ca_cert))  # hostname checking on
    with socket.create_connection(("127.0.0.1", port)) as raw, \
            client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.recv(2) == b"ok"
    thread.join(timeout=10)
    listener.close()
    # A client that trusts another CA refuses the server.
    other = create_tls(tmp_path / "other")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    thread = threading.Thread(target=lambda: _accept_quietly(listener, server_ctx), daemon=True)
    thread.start()
    with pytest.raises(ssl.SSLCertVerificationError):
        with socket.create_connection(("127.0.0.1", port)) as raw:
            ssl.create_default_context(cafile=str(other.ca_cert)).wrap_socket(raw, server_hostname="127.0.0.1")
    listener.close()


def _accept_quietly(listener, ctx):
    conn, _ = listener.accept()
    try:
        ctx.wrap_socket(conn, server_side=True)
    except (ssl.SSLError, OSError):
        pass


def test_site_key_pair_loads_where_flower_loads_it(tmp_path):
    from flwr.cli.supernode.register import try_load_public_key
    from flwr.supercore.primitives.asymmetric import public_key_to_bytes

    keys = create_site_key(tmp_path / "keys", "site-a")
    # flower-supernode --auth-supernode-private-key: an OpenSSH EC private key.
    private = load_ssh_private_key(keys.private_key.read_bytes(), None)
    assert isinstance(private, ec.EllipticCurvePrivateKey) and private.curve.name == "secp384r1"
    # flwr supernode register: the same function Flower's CLI calls on the .pub file.
    assert try_load_public_key(keys.public_key) == public_key_to_bytes(private.public_key())
    assert keys.public_key.read_text().startswith("ecdsa-sha2-nistp384 ")
    assert _mode(keys.private_key) == 0o600 and _mode(tmp_path / "keys") == 0o700


def test_existing_keys_are_never_silently_replaced(tmp_path, capsys):
    keys = create_site_key(tmp_path, "site-a")
    before = keys.private_key.read_bytes()
    with pytest.raises(KeyExistsError, match="--force"):
        create_site_key(tmp_path, "site-a")
    assert keys.private_key.read_bytes() == before
    tls = create_tls(tmp_path / "tls")
    ca_before = tls.ca_key.read_bytes()
    with pytest.raises(KeyExistsError):
        create_tls(tmp_path / "tls")
    assert tls.ca_key.read_bytes() == ca_before
    # The command says so and fails; --force replaces and says so.
    capsys.readouterr()
    assert medgan(["certs", "site-key", "--out", str(tmp_path), "--site", "site-a"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert keys.private_key.read_bytes() == before
    assert medgan(["certs", "site-key", "--out", str(tmp_path), "--site", "site-a", "--force"]) == 0
    assert keys.private_key.read_bytes() != before
    assert "--force: replacing" in capsys.readouterr().err
    assert _mode(keys.private_key) == 0o600


def test_site_name_must_be_a_plain_name(tmp_path):
    with pytest.raises(ValueError, match="plain file name"):
        create_site_key(tmp_path, "../escape")
