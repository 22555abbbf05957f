"""The default TLS settings against an independent scanner: sslyze checks a real valkey-server running the
rendered config against Mozilla's server-side TLS profiles, for an ECDSA and an RSA server key.

Defaults pass "intermediate" (TLS 1.2 and 1.3; for 1.2 only ECDHE key exchange with AEAD ciphers, no
RSA key exchange, no CBC; key exchange on X25519, P-256 or P-384 only); `protocols: [TLSv1.3]` with the
default ECDSA key passes "modern". The server requires client
certificates, so sslyze presents the connection Secret's; it trusts the cluster's CA for path validation.
"""

from __future__ import annotations

from typing import Any

import pytest
from sslyze import (  # type: ignore[attr-defined]
    # sslyze re-exports these from its submodules without __all__ or `as`: --strict (no implicit re-export) flags them.
    CertificateInfoExtraArgument,
    ClientAuthenticationCredentials,
    ScanCommandsExtraArguments,
    Scanner,
    ServerNetworkConfiguration,
    ServerNetworkLocation,
    ServerScanRequest,
)
from sslyze.mozilla_tls_profile.tls_config_checker import (
    SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
    MozillaTlsConfiguration,
    ServerNotCompliantWithTlsConfiguration,
    TlsConfigurationEnum,
    check_server_against_tls_configuration,
)

from tests.acceptance.conftest import Instance, example

pytestmark = pytest.mark.acceptance


def scan(inst: Instance) -> Any:
    cert, key = inst.client_files()
    location = ServerNetworkLocation(hostname="localhost", port=inst.layout.port, ip_address=inst.host)
    config = ServerNetworkConfiguration(
        tls_server_name_indication="localhost",
        tls_client_auth_credentials=ClientAuthenticationCredentials(certificate_chain_path=cert, key_path=key),
    )
    request = ServerScanRequest(
        server_location=location,
        network_configuration=config,
        scan_commands=SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
        scan_commands_extra_arguments=ScanCommandsExtraArguments(
            certificate_info=CertificateInfoExtraArgument(custom_ca_file=inst.tls_dir / "ca.crt")
        ),
    )
    scanner = Scanner()
    scanner.queue_scans([request])
    return next(iter(scanner.get_results()))


def issues(inst: Instance, profile: TlsConfigurationEnum) -> dict[str, str]:
    try:
        check_server_against_tls_configuration(scan(inst), MozillaTlsConfiguration.get(profile))
    except ServerNotCompliantWithTlsConfiguration as exc:
        return dict(exc.issues)
    return {}


@pytest.mark.parametrize("key", ["ECDSA-P256", "RSA-2048"])
def test_the_defaults_pass_mozilla_intermediate(launch: Any, key: str) -> None:
    cluster = example(mode="standalone", replicas=1, tls={"certificates": {"keyAlgorithm": key}})
    inst = launch(cluster, host="127.0.0.2")
    assert issues(inst, TlsConfigurationEnum.MOZILLA_INTERMEDIATE) == {}


def tls12_suites(inst: Instance) -> set[str]:
    result = scan(inst).scan_result.tls_1_2_cipher_suites.result
    return {s.cipher_suite.name for s in result.accepted_cipher_suites}


def test_the_scanner_sees_what_an_old_cipher_list_would_allow(launch: Any) -> None:
    # Not a rubber stamp: with an RSA key and a list that allows RSA key exchange with CBC, the scanner
    # finds that suite accepted; with the defaults, only ECDHE with AEAD.
    rsa = {"certificates": {"keyAlgorithm": "RSA-2048"}}
    weak = {**rsa, "ciphers": "AES128-SHA:ECDHE-RSA-AES128-GCM-SHA256"}
    old = launch(example(mode="standalone", replicas=1, tls=weak), host="127.0.0.2")
    assert "TLS_RSA_WITH_AES_128_CBC_SHA" in tls12_suites(old)
    default = tls12_suites(launch(example(mode="standalone", replicas=1, tls=rsa), host="127.0.0.3"))
    assert default
    assert all(s.startswith("TLS_ECDHE_") and ("GCM" in s or "CHACHA20" in s) for s in default), default


def test_tls13_only_with_the_default_ecdsa_key_passes_mozilla_modern(launch: Any) -> None:
    # Modern also asks for ECDSA certificates (the default keyAlgorithm); an RSA key stays intermediate.
    cluster = example(mode="standalone", replicas=1, tls={"protocols": ["TLSv1.3"]})
    inst = launch(cluster, host="127.0.0.2")
    assert issues(inst, TlsConfigurationEnum.MOZILLA_MODERN) == {}
