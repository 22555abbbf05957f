"""The Secrets a ValkeyCluster owns: CA, server TLS, client certificates, password, connection details."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from urllib.parse import quote

from valkey_operator import names
from valkey_operator.api.spec import ValkeyCluster
from valkey_operator.builders.common import Manifest, metadata
from valkey_operator.conf.users import USERS_KEY, User, users_file
from valkey_operator.pki.issue import KeyPair


def _b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def _secret(
    cluster: ValkeyCluster,
    name: str,
    component: str,
    data: Mapping[str, bytes | str],
    secret_type: str = "Opaque",
    annotations: Mapping[str, str] | None = None,
) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(cluster, name, component, annotations),
        "type": secret_type,
        "data": {k: _b64(v) for k, v in sorted(data.items())},
    }


def tls_secret(
    cluster: ValkeyCluster,
    name: str,
    component: str,
    pair: KeyPair,
    trust_bundle: bytes,
    annotations: Mapping[str, str] | None = None,
) -> Manifest:
    """A kubernetes.io/tls Secret with the trust bundle beside it, as cert-manager writes them."""
    data = {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem, "ca.crt": trust_bundle}
    return _secret(cluster, name, component, data, "kubernetes.io/tls", annotations)


def ca_secret(
    cluster: ValkeyCluster,
    ca: KeyPair,
    bundle: bytes,
    annotations: Mapping[str, str],
    next_ca: KeyPair | None = None,
) -> Manifest:
    """The CA that signs, the trust bundle, and during a CA rotation's first phase the next CA."""
    out = tls_secret(cluster, cluster.names.ca_secret, names.COMPONENT_CA, ca, bundle, annotations)
    if next_ca is not None:
        out["data"] |= {"next.crt": _b64(next_ca.cert_pem), "next.key": _b64(next_ca.key_pem)}
    return out


def server_secret(cluster: ValkeyCluster, server: KeyPair, bundle: bytes, annotations: Mapping[str, str]) -> Manifest:
    return tls_secret(cluster, cluster.names.tls_secret, names.COMPONENT_TLS, server, bundle, annotations)


def client_secret(
    cluster: ValkeyCluster, client: str, pair: KeyPair, bundle: bytes, port: int, user: User | None = None
) -> Manifest:
    """A client's certificate; with an ACL user, its name, (unless the certificate alone logs it in) its
    password, and the `uri` to connect with: with the password when there is one, with no user at all when
    the certificate logs it in (a user name without a password would make a client library send an AUTH
    that no password opens)."""
    out = tls_secret(cluster, cluster.names.client_secret(client), names.COMPONENT_CLIENT, pair, bundle)
    if user is not None:
        out["data"]["username"] = _b64(user.name)
        if user.password is not None:
            out["data"]["password"] = _b64(user.password)
        host = cluster.names.service_host(cluster.names.service)
        out["data"]["uri"] = _b64(connection_uri(cluster, host, port, user.password, user.name))
    return out


def users_secret(cluster: ValkeyCluster, given: Sequence[User]) -> Manifest:
    """The clients' ACL users as `user` directives, which pods include when they start (passwords only as
    their SHA-256); a Secret, since a hash of a password still should not be in a ConfigMap."""
    return _secret(cluster, cluster.names.users_secret, names.COMPONENT_SERVER, {USERS_KEY: users_file(given)})


def auth_secret(cluster: ValkeyCluster, password: str) -> Manifest:
    return _secret(
        cluster, cluster.names.auth_secret, names.COMPONENT_SERVER, {"username": "default", "password": password}
    )


def connection_uri(cluster: ValkeyCluster, host: str, port: int, password: str | None, user: str = "default") -> str:
    """`rediss://user:password@host:port`, user and password percent-encoded (an ACL user's name has an `@`)."""
    scheme = "rediss" if cluster.spec.tls.enabled else "redis"
    creds = f"{quote(user, safe='')}:{quote(password, safe='')}@" if password else ""
    return f"{scheme}://{creds}{host}:{port}"


def connection_secret(
    cluster: ValkeyCluster,
    port: int,
    password: str | None,
    bundle: bytes,
    client: KeyPair | None,
) -> Manifest:
    """Everything an application needs to connect out of the box."""
    host = cluster.names.service_host(cluster.names.service)
    data: dict[str, bytes | str] = {
        "uri": connection_uri(cluster, host, port, password),
        "host": host,
        "port": str(port),
        "tls": "true" if cluster.spec.tls.enabled else "false",
        # A sharded cluster needs a cluster client (it follows MOVED redirects by the nodes' names).
        "cluster": "true" if cluster.spec.mode == "cluster" else "false",
        "ca.crt": bundle,
    }
    if password:
        data["username"] = "default"
        data["password"] = password
    if client is not None:
        data["tls.crt"] = client.cert_pem
        data["tls.key"] = client.key_pem
    return _secret(cluster, cluster.names.connection_secret, names.COMPONENT_CLIENT, data)
