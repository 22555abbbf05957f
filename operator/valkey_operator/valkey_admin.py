"""The only code that speaks the Valkey protocol: TLS with the operator's client certificate, names verified."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import valkey

from valkey_operator.pki.issue import KeyPair


@dataclass(frozen=True)
class Credentials:
    """How the operator authenticates to pods: trust bundle, client certificate (optional), password."""

    bundle: bytes
    client: KeyPair | None
    password: str | None


@contextmanager
def _files(creds: Credentials) -> Iterator[tuple[str, str | None, str | None]]:
    # valkey-py reads client certificates from files: a private folder, removed at once.
    with tempfile.TemporaryDirectory(prefix="valkey-admin-") as tmp:
        os.chmod(tmp, 0o700)
        ca = Path(tmp, "ca.crt")
        ca.write_bytes(creds.bundle)
        cert = key = None
        if creds.client is not None:
            cert, key = str(Path(tmp, "tls.crt")), str(Path(tmp, "tls.key"))
            Path(cert).write_bytes(creds.client.cert_pem)
            Path(key).touch(mode=0o600)
            Path(key).write_bytes(creds.client.key_pem)
        yield str(ca), cert, key


@contextmanager
def connect(host: str, port: int, creds: Credentials, *, address: str | None = None) -> Iterator[valkey.Valkey]:
    """A TLS connection to `host` (verified against the bundle); `address` overrides where to dial."""
    with _files(creds) as (ca, cert, key):
        conn = valkey.Valkey(
            host=address or host,
            port=port,
            password=creds.password,
            ssl=True,
            ssl_ca_certs=ca,
            ssl_certfile=cert,
            ssl_keyfile=key,
            ssl_cert_reqs="required",
            ssl_check_hostname=address is None,
            socket_timeout=10,
            socket_connect_timeout=5,
        )
        try:
            conn.ping()  # handshake now, while the files exist
            yield conn
        finally:
            conn.close()


def replication_info(conn: valkey.Valkey) -> dict[str, str]:
    info: dict[str, object] = conn.info("replication")  # type: ignore[assignment]
    return {k: str(v) for k, v in info.items()}


def switchover(primary: valkey.Valkey, target_host: str, target_port: int, timeout_ms: int = 10000) -> None:
    """Coordinated FAILOVER: the primary pauses writes, waits for the target to catch up, then swaps roles."""
    primary.execute_command("FAILOVER", "TO", target_host, target_port, "TIMEOUT", timeout_ms)


def wait_role(conn: valkey.Valkey, role: str, attempts: int = 50, pause: float = 0.2) -> bool:
    """Poll INFO replication until `role` (master|slave) shows, a bounded number of times."""
    import time  # noqa: PLC0415 - only this helper sleeps

    for _ in range(attempts):
        if replication_info(conn).get("role") == role:
            return True
        time.sleep(pause)
    return False


def served_fingerprint(host: str, port: int, creds: Credentials, *, address: str | None = None) -> str:
    """SHA-256 of the certificate a server presents in a live handshake, its name verified against `host`."""
    import hashlib  # noqa: PLC0415
    import socket  # noqa: PLC0415
    import ssl  # noqa: PLC0415

    with _files(creds) as (ca, cert, key):
        ctx = ssl.create_default_context(cafile=ca)
        if cert and key:
            ctx.load_cert_chain(cert, key)
        with (
            socket.create_connection((address or host, port), timeout=10) as raw,
            ctx.wrap_socket(raw, server_hostname=host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    if der is None:
        raise ssl.SSLError(f"{host} presented no certificate")
    return hashlib.sha256(der).hexdigest()


def reload_tls(conn: valkey.Valkey, cert_file: str, key_file: str, ca_file: str) -> None:
    """Make a running server re-read its certificate files: the same paths force a re-read."""
    conn.execute_command(
        "CONFIG", "SET", "tls-cert-file", cert_file, "tls-key-file", key_file, "tls-ca-cert-file", ca_file
    )
