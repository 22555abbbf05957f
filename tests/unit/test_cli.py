"""The command line: crd (and the committed CRD file never drifting from it), render, version."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.unit.conftest import CONTRACT_OBJECTS
from valkey_operator import __version__
from valkey_operator.cli import crd_yaml, main

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "valkeyclusters.valkeyops.dev.yaml"
EXAMPLE = ROOT / "examples" / "valkeycluster.yaml"


def test_committed_crd_is_generated_from_the_schema() -> None:
    assert CRD_FILE.read_text() == crd_yaml(), "run: valkey-operator crd > crds/valkeyclusters.valkeyops.dev.yaml"


def test_crd_command_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crd"]) == 0
    crd = yaml.safe_load(capsys.readouterr().out)
    assert crd["metadata"]["name"] == "valkeyclusters.valkeyops.dev"
    assert crd["spec"]["names"]["shortNames"] == ["vkc"]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == __version__


def test_render_to_stdout_lists_every_contract_object(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "-f", str(EXAMPLE)]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    got = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert got == set(CONTRACT_OBJECTS)


def test_render_to_a_folder_writes_one_file_per_object(tmp_path: Path) -> None:
    assert main(["render", "-f", str(EXAMPLE), "-o", str(tmp_path)]) == 0
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 11
    assert "default_statefulset_cache.yaml" in files
    assert (tmp_path / "default_secret_cache-tls.yaml").stat().st_mode & 0o077 == 0


def test_render_refuses_bad_input_with_a_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: valkeyops.dev/v1alpha1\nkind: ValkeyCluster\nmetadata: {name: c}\n"
        "spec: {mode: cluster, shards: 2}\n"
    )
    assert main(["render", "-f", str(bad)]) == 2
    assert "shards must be at least 3" in capsys.readouterr().err


def test_render_refuses_other_kinds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "cm.yaml"
    bad.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    assert main(["render", "-f", str(bad)]) == 2
    assert "expected valkeyops.dev/v1alpha1 ValkeyCluster" in capsys.readouterr().err


def test_console_script_is_installed() -> None:
    out = subprocess.run(
        [str(Path(sys.executable).parent / "valkey-operator"), "version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == __version__
