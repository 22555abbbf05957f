"""Property tests of the renderer: for any valid spec, the directives follow from the spec and none repeats."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from valkey_operator.api.spec import ValkeyCluster, parse_spec
from valkey_operator.conf.valkey_conf import AUTH_CLIENTS, render_valkey_conf

specs = st.fixed_dictionaries(
    {
        "mode": st.sampled_from(["standalone", "replication", "cluster"]),
        "image": st.sampled_from(
            [
                "valkey/valkey:7.2",
                "valkey/valkey:8.0",
                "valkey/valkey:8.1",
                "valkey/valkey:9.1",
                "valkey/valkey:latest",
                "valkey/valkey@sha256:" + "00" * 32,
            ]
        ),
        "persistence": st.fixed_dictionaries({"enabled": st.booleans()}),
        "tls": st.fixed_dictionaries(
            {
                "mode": st.sampled_from(["disabled", "preferred", "required"]),
                "clientAuth": st.sampled_from(["required", "optional", "none"]),
                "replication": st.booleans(),
                "clusterBus": st.booleans(),
                "protocols": st.lists(st.sampled_from(["TLSv1.2", "TLSv1.3"]), min_size=1, max_size=2, unique=True),
                "ciphers": st.none() | st.sampled_from(["HIGH:!aNULL", "ECDHE-ECDSA-AES128-GCM-SHA256"]),
                "ciphersuites": st.none() | st.just("TLS_AES_128_GCM_SHA256"),
                "rotation": st.fixed_dictionaries({"strategy": st.sampled_from(["RollingRestart", "HotReload"])}),
            }
        ),
    }
)


def cluster_of(raw: dict[str, Any]) -> ValkeyCluster:
    raw = {**raw, "replicas": 1 if raw["mode"] == "standalone" else 3}
    raw["tls"] = {k: v for k, v in raw["tls"].items() if v is not None}
    return ValkeyCluster("cache", "apps", parse_spec(raw))


@settings(max_examples=300)
@given(specs)
def test_directives_follow_from_the_spec(raw: dict[str, Any]) -> None:
    cluster = cluster_of(raw)
    tls = cluster.spec.tls
    lines = [line for line in render_valkey_conf(cluster).splitlines() if line and not line.startswith("#")]
    names = [line.split(" ", 1)[0] for line in lines]
    directives = dict(line.split(" ", 1) for line in lines)
    assert [n for n, count in Counter(names).items() if count > 1] == []
    assert names[-1] == "include"
    assert (directives["port"] == "0") is (tls.mode == "required")
    assert any(n.startswith("tls-") for n in names) is tls.enabled
    if tls.enabled:
        assert directives["tls-auth-clients"] == AUTH_CLIENTS[tls.client_auth]
        assert directives["tls-protocols"] == '"' + " ".join(tls.protocols) + '"'
        assert "tls-ciphers" in directives  # the spec's list, or Mozilla's intermediate one
        assert ("tls-replication" in directives) is (cluster.spec.mode != "standalone")
        assert ("tls-cluster" in directives) is (cluster.spec.mode == "cluster")
    assert ("cluster-enabled" in directives) is (cluster.spec.mode == "cluster")
    assert directives["appendonly"] == ("yes" if cluster.spec.persistence.enabled else "no")
