"""Names, labels and DNS names of everything a ValkeyCluster owns: the one place they are spelled."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

GROUP = "valkeyops.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
INSTANCE_LABEL = "app.kubernetes.io/instance"  # the cluster an owned object belongs to
KIND = "ValkeyCluster"
PLURAL = "valkeyclusters"
SINGULAR = "valkeycluster"
SHORT_NAME = "vkc"
CATEGORY = "valkey"
MANAGER = "valkey-tls-operator"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
ANNOTATION_PREFIX = f"{GROUP}/"
# Issuer CertManager: the API of the Certificates the operator owns and of the issuers it reads.
CERT_MANAGER_GROUP = "cert-manager.io"
CERT_MANAGER_API = f"{CERT_MANAGER_GROUP}/v1"
CERT_MANAGER_CERTIFICATE = (
    f"{CERT_MANAGER_GROUP}/certificate-name"  # on each Secret cert-manager writes: for which Certificate
)

ANN_TLS_REVISION = f"{GROUP}/tls-revision"
ANN_CONFIG_HASH = f"{GROUP}/config-hash"
# On the pod template: a digest of the whole template, so a pod's own annotation says whether it is current.
ANN_TEMPLATE_HASH = f"{GROUP}/template-hash"
ANN_ROTATE_CERTIFICATES = f"{GROUP}/rotate-certificates"
ANN_ROTATE_CA = f"{GROUP}/rotate-ca"
# Written on the Secrets the operator owns, so that the state of a rotation survives a restart.
ANN_REVISION = f"{GROUP}/revision"
ANN_HANDLED_ROTATE_CERTIFICATES = f"{GROUP}/handled-rotate-certificates"
ANN_HANDLED_ROTATE_CA = f"{GROUP}/handled-rotate-ca"
ANN_RETIRING_CA = f"{GROUP}/retiring-ca-fingerprint"
# A CA rotation's phase and when it began, on the CA Secret (so it survives an operator restart); with
# issuer CertManager, on the server Secret (a CA change behind the issuer).
ANN_CA_ROTATION_PHASE = f"{GROUP}/ca-rotation-phase"
ANN_CA_ROTATION_SINCE = f"{GROUP}/ca-rotation-since"
# Under HotReload the trust bundle's digest is on the pod template: a bundle change restarts pods.
ANN_TRUST_BUNDLE = f"{GROUP}/trust-bundle-hash"
ANN_SPEC_HASH = f"{GROUP}/certificate-spec-hash"

# Pod roles, set by the operator; the read-write Service selects the primary, the read-only one the replicas.
ROLE_LABEL = f"{GROUP}/role"
ROLE_PRIMARY = "primary"
ROLE_REPLICA = "replica"

COMPONENT_SERVER = "server"
COMPONENT_CA = "ca"
COMPONENT_TLS = "tls"
COMPONENT_CONFIG = "config"
COMPONENT_CLIENT = "client"

DEFAULT_CLUSTER_DOMAIN = "cluster.local"


def labels(cluster: str, component: str) -> dict[str, str]:
    """The labels every created object carries."""
    return {
        "app.kubernetes.io/name": "valkey",
        INSTANCE_LABEL: cluster,
        MANAGED_BY_LABEL: MANAGER,
        "app.kubernetes.io/component": component,
    }


def selector_labels(cluster: str) -> dict[str, str]:
    """The labels that select a cluster's Valkey pods (stable: never changes for a running cluster)."""
    return {
        "app.kubernetes.io/name": "valkey",
        INSTANCE_LABEL: cluster,
        "app.kubernetes.io/component": COMPONENT_SERVER,
    }


def owned_selector(cluster: str) -> dict[str, str]:
    """The labels that select every object the operator created for one cluster, pods included."""
    return {INSTANCE_LABEL: cluster, MANAGED_BY_LABEL: MANAGER}


# Every object the operator created, for any cluster (a label selector: the instance label only exists).
OWNED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGER},{INSTANCE_LABEL}"
# Issuer CertManager: the Secrets cert-manager writes for a cluster's Certificates carry this value (through
# their secretTemplate), not the operator's own: they are cert-manager's, outlive the cluster, and are never
# read as an object the operator made. The Secrets watch selects both, so a pass reads them from memory.
# Their cluster is named by a label of the project's own, not app.kubernetes.io/instance: without an owner
# reference, that label would make GitOps tools that track by it (Argo CD's label tracking) count them in
# an application of the cluster's name, and prune them.
ISSUED_BY_CERT_MANAGER = f"{MANAGER}.cert-manager"
CLUSTER_LABEL = f"{GROUP}/cluster"
SECRETS_SELECTOR = f"{MANAGED_BY_LABEL} in ({MANAGER},{ISSUED_BY_CERT_MANAGER})"


def issued_labels(cluster: str) -> dict[str, str]:
    """The labels of a Secret cert-manager writes for one of the cluster's Certificates."""
    return {MANAGED_BY_LABEL: ISSUED_BY_CERT_MANAGER, CLUSTER_LABEL: cluster}


def cluster_of(labels: Mapping[str, str]) -> str | None:
    """The cluster a watched object belongs to: the Secrets cert-manager writes for it name it by
    CLUSTER_LABEL (first: a policy may stamp an instance label on them), the operator's own objects as
    their instance."""
    return labels.get(CLUSTER_LABEL) or labels.get(INSTANCE_LABEL) or None


def watch_selector(kind: str) -> str:
    """The label selector of the operator's watch (and sweep) of an owned kind."""
    return SECRETS_SELECTOR if kind == "Secret" else OWNED_SELECTOR


def ordinal(pod: str) -> int:
    """A StatefulSet pod's ordinal (`cache-2` -> 2); -1 for a name without one."""
    tail = pod.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


@dataclass(frozen=True)
class ClusterNames:
    """Every name derived from one ValkeyCluster's name and namespace."""

    name: str
    namespace: str
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN

    @property
    def ca_secret(self) -> str:
        return f"{self.name}-ca"

    @property
    def tls_secret(self) -> str:
        return f"{self.name}-tls"

    def acl_user(self, client: str) -> str:
        """A client's ACL user, and its certificate's CN: `<client>@<cluster>.<namespace>`, unique across
        namespaces (clusters that share a CA) and unlike every other CN the operator issues (no `@`)."""
        return f"{client}@{self.name}.{self.namespace}"

    def client_secret(self, client: str) -> str:
        return f"{self.name}-client-{client}"

    def certificate(self, role: str) -> str:
        """Issuer CertManager: the Certificate for `role` ("" for the server's, else a client's name or
        "connection", which no client may take)."""
        if not role:
            return f"{self.name}-server"
        return self.connection_secret if role == "connection" else self.client_secret(role)

    def issued_secret(self, role: str) -> str:
        """Issuer CertManager: the Secret cert-manager writes for `role`'s Certificate (only ever read). Its
        own prefix keeps it apart from every Secret the operator writes (a client `app-issued` included)."""
        if not role:
            return f"{self.name}-issued-server"
        return f"{self.name}-issued-connection" if role == "connection" else f"{self.name}-issued-client-{role}"

    @property
    def auth_secret(self) -> str:
        return f"{self.name}-auth"

    @property
    def users_secret(self) -> str:
        return f"{self.name}-users"

    @property
    def connection_secret(self) -> str:
        return f"{self.name}-connection"

    @property
    def config_map(self) -> str:
        return f"{self.name}-config"

    @property
    def headless_service(self) -> str:
        return f"{self.name}-headless"

    @property
    def service(self) -> str:
        return self.name

    @property
    def ro_service(self) -> str:
        return f"{self.name}-ro"

    @property
    def statefulset(self) -> str:
        return self.name

    @property
    def pdb(self) -> str:
        return self.name

    def pod(self, ordinal: int) -> str:
        return f"{self.name}-{ordinal}"

    def pods(self, count: int) -> list[str]:
        return [self.pod(i) for i in range(count)]

    @property
    def pod_domain(self) -> str:
        """The domain of every pod's stable name; start.sh gets it from the pod's environment."""
        return f"{self.headless_service}.{self.namespace}.svc"

    def pod_fqdn(self, pod: str) -> str:
        """The stable DNS name of a pod, as the operator and peers address it (and verify it)."""
        return f"{pod}.{self.pod_domain}"

    def pod_dns_names(self, pod: str) -> list[str]:
        short = self.pod_fqdn(pod)
        return [short, f"{short}.{self.cluster_domain}"]

    def service_dns_names(self, service: str) -> list[str]:
        return [
            service,
            f"{service}.{self.namespace}",
            f"{service}.{self.namespace}.svc",
            f"{service}.{self.namespace}.svc.{self.cluster_domain}",
        ]

    def service_host(self, service: str) -> str:
        return f"{service}.{self.namespace}.svc"

    def server_dns_names(self, pod_count: int, extra: tuple[str, ...] = ()) -> list[str]:
        """Every name a server certificate must cover: Services, every pod, localhost, extras."""
        names: list[str] = []
        for svc in (self.service, self.ro_service, self.headless_service):
            names += self.service_dns_names(svc)
        for pod in self.pods(pod_count):
            names += self.pod_dns_names(pod)
        names.append("localhost")
        names += extra
        return list(dict.fromkeys(names))
