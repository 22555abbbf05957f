"""Offline render: every object the operator would create for a ValkeyCluster, certificates freshly minted."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from valkey_operator import names
from valkey_operator.api.spec import parse_cluster
from valkey_operator.builders.common import Manifest
from valkey_operator.builders.desired import Inputs, desired_objects
from valkey_operator.clock import Clock, SystemClock
from valkey_operator.conf.layout import POD_LAYOUT
from valkey_operator.conf.users import needs_password, users
from valkey_operator.pki.plan import Observed, plan


class RenderError(ValueError):
    pass


def render_one(body: Mapping[str, Any], clock: Clock | None = None) -> list[Manifest]:
    """Objects for one ValkeyCluster body (raises SpecError or RenderError)."""
    cluster = parse_cluster(body)
    decided = plan(cluster, Observed(), (clock or SystemClock()).now())
    if decided.material is None:
        problem = decided.problems[0]
        raise RenderError(f"{problem.reason}: {problem.message}")
    password = secrets.token_urlsafe(24) if cluster.spec.auth_enabled else None
    passwords = {client: secrets.token_urlsafe(24) for client, _ in cluster.spec.tls.acls}
    wanted = users(cluster, passwords if needs_password(cluster) else {})
    return desired_objects(cluster, Inputs(decided.material, password, users=wanted, layout=POD_LAYOUT))


def render_documents(documents: Iterable[Any], clock: Clock | None = None) -> list[Manifest]:
    out: list[Manifest] = []
    for doc in documents:
        if not isinstance(doc, dict):
            continue
        if doc.get("kind") != names.KIND or not str(doc.get("apiVersion", "")).startswith(names.GROUP):
            raise RenderError(
                f"expected {names.API_VERSION} {names.KIND}, got {doc.get('apiVersion')} {doc.get('kind')}"
            )
        out += render_one(doc, clock)
    return out


def file_name(manifest: Manifest) -> str:
    meta = manifest["metadata"]
    return f"{meta.get('namespace', 'default')}_{manifest['kind'].lower()}_{meta['name']}.yaml"


def dump(manifests: list[Manifest]) -> str:
    return yaml.safe_dump_all(manifests, sort_keys=False)


def write_folder(manifests: list[Manifest], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for m in manifests:
        path = folder / file_name(m)
        path.write_text(yaml.safe_dump(m, sort_keys=False))
        if m["kind"] == "Secret":
            path.chmod(0o600)
        paths.append(path)
    return paths
