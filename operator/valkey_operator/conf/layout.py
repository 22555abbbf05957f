"""Where files live and which ports listen inside a Valkey pod: shared by the renderer and the builders."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    """Paths and ports. The pod uses the defaults; tests point them at a temporary folder and free ports."""

    tls_dir: str = "/tls"
    config_dir: str = "/etc/valkey"
    run_dir: str = "/run/valkey"
    data_dir: str = "/data"
    port: int = 6379  # TLS when TLS is on; plaintext when tls.mode is disabled
    plain_port: int = 6380  # plaintext beside TLS under tls.mode preferred
    bus_port: int = 16379
    users_dir: str = "/acl"  # the users Secret, mounted when some client has an ACL user

    @property
    def cert_file(self) -> str:
        return f"{self.tls_dir}/tls.crt"

    @property
    def key_file(self) -> str:
        return f"{self.tls_dir}/tls.key"

    @property
    def ca_file(self) -> str:
        return f"{self.tls_dir}/ca.crt"

    @property
    def users_file(self) -> str:
        return f"{self.users_dir}/users.conf"

    @property
    def config_file(self) -> str:
        return f"{self.config_dir}/valkey.conf"

    @property
    def runtime_file(self) -> str:
        return f"{self.run_dir}/runtime.conf"

    @property
    def primary_file(self) -> str:
        return f"{self.config_dir}/primary"


POD_LAYOUT = Layout()
CONFIG_KEY = "valkey.conf"
START_KEY = "start.sh"
PROBE_KEY = "probe.sh"
PRIMARY_KEY = "primary"
