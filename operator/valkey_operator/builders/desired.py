"""Every object a ValkeyCluster owns, in apply order (Secrets and config before the pods that use them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from valkey_operator.api.spec import ValkeyCluster
from valkey_operator.builders import secrets
from valkey_operator.builders.common import Manifest
from valkey_operator.builders.configmap import config_files, config_hash, config_map
from valkey_operator.builders.services import services
from valkey_operator.builders.statefulset import bundle_digest, pod_disruption_budget, statefulset
from valkey_operator.conf.layout import Layout
from valkey_operator.conf.users import User
from valkey_operator.pki.plan import CONNECTION_CLIENT, Material


@dataclass(frozen=True)
class Inputs:
    """Everything the builders need besides the spec: decided elsewhere, passed in whole."""

    material: Material
    password: str | None
    primary: str | None = None
    users: tuple[User, ...] = ()  # the clients' ACL users (conf.users.users)
    users_kept: bool = False  # the users Secret exists: once no client has rules it is emptied, not deleted
    layout: Layout = field(kw_only=True)  # where files live and which ports listen in the pod


def desired_objects(cluster: ValkeyCluster, inputs: Inputs) -> list[Manifest]:
    m = inputs.material
    out: list[Manifest] = []
    if m.ca is not None:
        out.append(secrets.ca_secret(cluster, m.ca, m.bundle, m.ca_annotations, m.next_ca))
    out.append(secrets.server_secret(cluster, m.server, m.bundle, m.server_annotations))
    user_of = {u.client: u for u in inputs.users}
    out += [
        secrets.client_secret(cluster, name, pair, m.bundle, inputs.layout.port, user_of.get(name))
        for name, pair in m.clients.items()
        if name != CONNECTION_CLIENT
    ]
    # The pods mount it: it exists even before any user is given (empty). The operator deletes no Secret (its
    # RBAC has no delete on Secrets): once no client has rules, the users go from it, and it goes with the
    # cluster (owner reference).
    if cluster.spec.tls.acls or inputs.users_kept:
        out.append(secrets.users_secret(cluster, inputs.users))
    if inputs.password is not None:
        out.append(secrets.auth_secret(cluster, inputs.password))
    out.append(
        secrets.connection_secret(
            cluster, inputs.layout.port, inputs.password, m.bundle, m.clients.get(CONNECTION_CLIENT)
        )
    )
    files = config_files(cluster, inputs.layout)
    out.append(config_map(cluster, files, inputs.primary))
    out += services(cluster, inputs.layout)
    out.append(statefulset(cluster, inputs.layout, m.revision, config_hash(files), bundle_digest(m.bundle)))
    out.append(pod_disruption_budget(cluster))
    return out
