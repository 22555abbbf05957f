"""The only code that speaks the Valkey protocol: TLS with the operator's client certificate, names verified."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import valkey

from valkey_operator.api.spec import SpecError, ValkeyCluster
from valkey_operator.conf.layout import POD_LAYOUT, Layout
from valkey_operator.conf.version import Release, parse_release
from valkey_operator.pki.issue import KeyPair
from valkey_operator.snapshot import ClusterNode, ClusterView, Replication, SlotMigration


class PodError(Exception):
    """A pod could not be reached, refused the handshake, or refused the command."""


@dataclass(frozen=True)
class Credentials:
    """How the operator authenticates to pods: trust bundle, client certificate (optional), password.
    No bundle: the cluster runs with TLS disabled, and so does the operator's connection (never a fallback)."""

    bundle: bytes | None
    client: KeyPair | None
    password: str | None


@contextmanager
def _files(creds: Credentials) -> Iterator[tuple[str, str | None, str | None]]:
    # valkey-py reads client certificates from files: a private folder, removed at once.
    with tempfile.TemporaryDirectory(prefix="valkey-admin-") as tmp:
        os.chmod(tmp, 0o700)
        ca = Path(tmp, "ca.crt")
        ca.write_bytes(creds.bundle or b"")
        cert = key = None
        if creds.client is not None:
            cert, key = str(Path(tmp, "tls.crt")), str(Path(tmp, "tls.key"))
            Path(cert).write_bytes(creds.client.cert_pem)
            Path(key).touch(mode=0o600)
            Path(key).write_bytes(creds.client.key_pem)
        yield str(ca), cert, key


# Every call answers in milliseconds from a live server; a pod that does not (cut off, frozen) costs a pass
# at most this long per call, so a lost primary is noticed within seconds.
TIMEOUT_S = 3.0


@contextmanager
def connect(
    host: str, port: int, creds: Credentials, *, address: str | None = None, timeout: float = TIMEOUT_S
) -> Iterator[valkey.Valkey]:
    """A TLS connection to `host` (verified against the bundle); `address` overrides where to dial. Plaintext
    only for a cluster whose TLS is disabled (Credentials without a bundle)."""
    if creds.bundle is None:
        conn = valkey.Valkey(host=address or host, port=port, password=creds.password, socket_timeout=timeout)
        try:
            conn.ping()
            yield conn
        finally:
            conn.close()
        return
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
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
        try:
            conn.ping()  # handshake now, while the files exist
            yield conn
        finally:
            conn.close()


def cipher_refusal(cluster: ValkeyCluster) -> SpecError | None:
    """A cipher list OpenSSL selects nothing from makes every server refuse to start, and only OpenSSL can
    tell (the operator's OpenSSL and the image's are the same major version): the spec error to report."""
    ciphers = cluster.spec.tls.ciphers
    if not ciphers or not cluster.spec.tls.enabled:
        return None
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(ciphers)
    except ssl.SSLError:
        return SpecError("InvalidCiphers", f"spec.tls.ciphers: OpenSSL knows no cipher in {ciphers!r}.")
    return None


def _text(reply: object) -> str:
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def _nodes_text(reply: object) -> str:
    """CLUSTER NODES as its text (valkey-py may have parsed it into a dict by address)."""
    if isinstance(reply, dict):
        raise PodError("CLUSTER NODES came back parsed; the raw text is needed")
    return _text(reply)


def parse_cluster_nodes(text: str) -> tuple[ClusterNode, ...]:
    """CLUSTER NODES: `<id> <ip:port@bus[,host]> <flags> <master|-> <ping> <pong> <epoch> <link> <slot>...`."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        slots = []
        migrating = False
        for item in fields[8:]:
            if item.startswith("["):
                migrating = True  # a slot being migrated or imported
                continue
            first, _, last = item.partition("-")
            slots.append((int(first), int(last or first)))
        out.append(
            ClusterNode(
                id=fields[0],
                flags=frozenset(fields[2].split(",")),
                master=None if fields[3] == "-" else fields[3],
                slots=tuple(slots),
                connected=fields[7] == "connected",
                ip=_address(fields[1]),
                migrating=migrating,
                hostname=next((a for a in fields[1].split(",")[1:2] if "=" not in a), ""),
            )
        )
    return tuple(out)


def server_version(info: Mapping[str, object]) -> tuple[int, int]:
    """INFO server's valkey_version (Valkey 8.0+) or redis_version, as (major, minor); (0, 0) if unreadable."""
    text = str(info.get("valkey_version") or info.get("redis_version") or "")
    parts = text.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return (0, 0)


def parse_slot_migrations(reply: object) -> tuple[SlotMigration, ...]:
    """CLUSTER GETSLOTMIGRATIONS: a list of jobs, each a flat list of field, value pairs (or a map)."""
    out = []
    for job in reply if isinstance(reply, (list, tuple)) else ():
        if isinstance(job, dict):
            fields = {_text(k): _text(v) for k, v in job.items()}
        else:
            items = [_text(x) for x in job]
            fields = dict(zip(items[::2], items[1::2], strict=False))
        out.append(
            SlotMigration(
                operation=fields.get("operation", ""),
                slots=fields.get("slot_ranges", ""),
                source=fields.get("source_node", ""),
                target=fields.get("target_node", ""),
                state=fields.get("state", ""),
                created=int(t) if (t := fields.get("create_time", "")).isdigit() else 0,
            )
        )
    return tuple(out)


def parse_acl_list(reply: object) -> dict[str, str]:
    """ACL LIST: one `user <name> <rules>` line per user; by name."""
    out = {}
    for item in reply if isinstance(reply, (list, tuple)) else ():
        line = _text(item)
        parts = line.split(" ", 2)
        if len(parts) >= 2 and parts[0] == "user":
            out[parts[1]] = line
    return out


def _address(field: str) -> str:
    """The IP of `ip:port@bus[,hostname]` (an IPv6 address has colons of its own: the port is after the last)."""
    host, sep, _ = field.split(",", maxsplit=1)[0].split("@", maxsplit=1)[0].rpartition(":")
    return host if sep else ""


def _cluster_field(reply: object, key: str) -> str:
    """A field of CLUSTER INFO's reply (parsed into a dict by the client, or its text)."""
    if isinstance(reply, dict):
        return str(reply.get(key, ""))
    raw = reply.decode() if isinstance(reply, bytes) else str(reply)
    for line in raw.splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return value.strip()
    return ""


def _seconds(info: Mapping[str, object], key: str) -> int | None:
    """A non-negative count of seconds from INFO; None when absent or -1 (never)."""
    value = int(str(info[key])) if key in info else -1
    return value if value >= 0 else None


def parse_replication(info: Mapping[str, object]) -> Replication:
    return Replication(
        role=str(info.get("role", "")),
        master_host=str(info["master_host"]) if "master_host" in info else None,
        link_up=str(info.get("master_link_status", "")) == "up",
        offset=int(str(info.get("master_repl_offset", 0) or 0)),
        failover_state=str(info.get("master_failover_state", "no-failover")),
        last_io_s=_seconds(info, "master_last_io_seconds_ago"),
        link_down_s=_seconds(info, "master_link_down_since_seconds"),
        replid=str(info.get("master_replid", "")),
        replid2=_history(info.get("master_replid2")),
        release=parse_release(str(info.get("valkey_version") or info.get("redis_version") or "")),
    )


def _history(value: object) -> str:
    """A replication ID; "" for none (Valkey writes forty zeros)."""
    text = str(value or "")
    return "" if set(text) <= {"0"} else text


class ValkeyAdmin:
    """Every call the operator makes to a pod, each over TLS to the pod's stable DNS name (verified)."""

    def __init__(self, layout: Layout = POD_LAYOUT) -> None:
        self.layout = layout
        self._commands: dict[Release | None, frozenset[str]] = {}

    @contextmanager
    def _conn(self, host: str, creds: Credentials | None, timeout: float = TIMEOUT_S) -> Iterator[valkey.Valkey]:
        if creds is None:
            raise PodError(f"{host}: no certificates to talk to it with yet")
        try:
            with connect(host, self.layout.port, creds, timeout=timeout) as conn:
                yield conn
        except (OSError, valkey.exceptions.ValkeyError) as exc:
            raise PodError(f"{host}: {exc}") from exc

    def replication(self, host: str, creds: Credentials | None, timeout: float = TIMEOUT_S) -> Replication:
        with self._conn(host, creds, timeout) as conn:
            info: dict[str, object] = conn.execute_command("INFO", "replication", "server")
        return parse_replication(info)

    def cluster_view(self, host: str, creds: Credentials | None) -> ClusterView:
        """Cluster mode: the node's id (its `myself` line), cluster_state and every node it knows (CLUSTER
        NODES)."""
        with self._conn(host, creds) as conn:
            state = _cluster_field(conn.execute_command("CLUSTER", "INFO"), "cluster_state")
            nodes = conn.execute_command("CLUSTER", "NODES")
            server: dict[str, object] = conn.info("server")  # type: ignore[assignment]
            try:
                jobs = conn.execute_command("CLUSTER", "GETSLOTMIGRATIONS")
            except valkey.exceptions.ResponseError:  # before Valkey 9.0: no atomic slot migration
                jobs = []
        known = parse_cluster_nodes(_nodes_text(nodes))
        return ClusterView(
            next((n.id for n in known if "myself" in n.flags), ""),
            state,
            known,
            parse_slot_migrations(jobs),
            server_version(server),
        )

    def meet(self, host: str, ip: str, creds: Credentials | None) -> None:
        """CLUSTER MEET ip port bus-port: the node at `ip` joins (the address must be an IP)."""
        with self._conn(host, creds) as conn:
            conn.execute_command("CLUSTER", "MEET", ip, self.layout.port, self.layout.bus_port)

    def add_slots(self, host: str, first: int, last: int, creds: Credentials | None) -> None:
        with self._conn(host, creds) as conn:
            conn.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)

    def migrate_slots(
        self, host: str, moves: Sequence[tuple[Sequence[tuple[int, int]], str]], creds: Credentials | None
    ) -> None:
        """CLUSTER MIGRATESLOTS SLOTSRANGE a b [a b ...] NODE id [SLOTSRANGE ...]: returns at once."""
        args: list[object] = []
        for ranges, target in moves:
            args += ["SLOTSRANGE", *(x for r in ranges for x in r), "NODE", target]
        with self._conn(host, creds) as conn:
            conn.execute_command("CLUSTER", "MIGRATESLOTS", *args)

    def replicate(self, host: str, primary_id: str, creds: Credentials | None) -> None:
        with self._conn(host, creds) as conn:
            conn.execute_command("CLUSTER", "REPLICATE", primary_id)

    def forget(self, host: str, node_id: str, creds: Credentials | None) -> None:
        with self._conn(host, creds) as conn:
            conn.execute_command("CLUSTER", "FORGET", node_id)

    def cluster_failover(self, host: str, creds: Credentials | None) -> None:
        """CLUSTER FAILOVER on a replica (coordinated: no acknowledged write is lost); returns at once."""
        with self._conn(host, creds) as conn:
            conn.execute_command("CLUSTER", "FAILOVER")

    def switchover(self, host: str, target_host: str, creds: Credentials | None, timeout_ms: int = 10000) -> None:
        """Coordinated FAILOVER: the primary pauses writes, waits for the target to catch up, then swaps roles.

        The command returns at once; the next pass reads the outcome from INFO replication.
        """
        with self._conn(host, creds) as conn:
            conn.execute_command("FAILOVER", "TO", target_host, self.layout.port, "TIMEOUT", timeout_ms)

    def promote(self, host: str, creds: Credentials | None) -> None:
        """REPLICAOF NO ONE: this replica becomes the primary, keeping its data and replication history."""
        with self._conn(host, creds) as conn:
            conn.execute_command("REPLICAOF", "NO", "ONE")

    def repoint(self, host: str, primary_host: str, creds: Credentials | None) -> None:
        """Make a replica follow `primary_host` (REPLICAOF); a no-op for one that already does."""
        with self._conn(host, creds) as conn:
            conn.execute_command("REPLICAOF", primary_host, self.layout.port)

    def acl_lines(self, host: str, creds: Credentials | None) -> dict[str, str]:
        """Every user's `ACL LIST` line, by user name."""
        with self._conn(host, creds) as conn:
            return parse_acl_list(conn.execute_command("ACL", "LIST"))

    def commands(self, host: str, creds: Credentials | None, release: Release | None) -> frozenset[str]:
        """The command names the server knows, lower-case (COMMAND LIST: `config|get` for a subcommand). Asked
        once per release: the same release knows the same commands (a module loaded on one pod only is
        not seen, and the operator loads none)."""
        known = self._commands.get(release) if release is not None else None
        if known is None:
            with self._conn(host, creds) as conn:
                # command_list: execute_command("COMMAND", "LIST") gets plain COMMAND's reply parser, which
                # fails on a list of names.
                listed: list[bytes | str] = conn.command_list()  # type: ignore[assignment]
            known = frozenset((n.decode() if isinstance(n, bytes) else str(n)).lower() for n in listed)
            if release is not None:
                self._commands[release] = known
        return known

    def set_users(
        self,
        host: str,
        users: Sequence[tuple[str, Sequence[str]]],
        remove: Sequence[str],
        creds: Credentials | None,
    ) -> dict[str, str]:
        """ACL SETUSER each user (its arguments start from `reset`), ACL DELUSER the removed ones; the `ACL
        LIST` lines right after, by user name, on the same connection."""
        with self._conn(host, creds) as conn:
            for name, args in users:
                conn.execute_command("ACL", "SETUSER", name, *args)
            if remove:
                conn.execute_command("ACL", "DELUSER", *remove)
            return parse_acl_list(conn.execute_command("ACL", "LIST"))

    def reload(self, host: str, creds: Credentials | None) -> None:
        """Make a running server re-read its certificate files: the same paths force a re-read."""
        lay = self.layout
        with self._conn(host, creds) as conn:
            conn.execute_command(
                "CONFIG",
                "SET",
                "tls-cert-file",
                lay.cert_file,
                "tls-key-file",
                lay.key_file,
                "tls-ca-cert-file",
                lay.ca_file,
            )

    def served(self, host: str, creds: Credentials | None, bus: bool = False) -> str:
        """SHA-256 of the certificate `host` presents in a live handshake, its name verified: on the client
        port, or with `bus` on the cluster bus port (which asks for the client certificate too)."""
        if creds is None or creds.bundle is None:
            raise PodError(f"{host}: no certificates to talk to it with")
        port = self.layout.bus_port if bus else self.layout.port
        try:
            with _files(creds) as (ca, cert, key):
                ctx = ssl.create_default_context(cafile=ca)
                if cert and key:
                    ctx.load_cert_chain(cert, key)
                with (
                    socket.create_connection((host, port), timeout=TIMEOUT_S) as raw,
                    ctx.wrap_socket(raw, server_hostname=host) as tls,
                ):
                    der = tls.getpeercert(binary_form=True)
        except OSError as exc:
            raise PodError(f"{host}: {exc}") from exc
        if der is None:
            raise PodError(f"{host} presented no certificate")
        return hashlib.sha256(der).hexdigest()
