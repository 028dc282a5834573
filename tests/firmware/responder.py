"""A real mDNS responder (python-zeroconf) on loopback, advertising a gateway's `_mqtt._tcp` service as the
gateway's own advertiser does (docs/discovery.md: TXT txtvers, ver, ingest, sensors, auth), so that a sample's
discovery is checked against an independent implementation. Run it inside tests.netns' namespace (loopback with
multicast)."""

from __future__ import annotations

import socket
from types import TracebackType

from zeroconf import IPVersion, ServiceInfo, Zeroconf

MQTT = "_mqtt._tcp.local."


class Responder:
    def __init__(self, name: str, port: int, txt: dict[str, str] | None = None) -> None:
        self.name = name
        self.zeroconf = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
        self.txt = txt or {"txtvers": "1", "ver": "0.1.0", "ingest": "db/append/", "sensors": "sensors/", "auth": "0"}
        self.info = self._info(port)
        # cooperating_responders: no probing for a name that nobody else on this private loopback can hold.
        self.zeroconf.register_service(self.info, cooperating_responders=True)

    def _info(self, port: int) -> ServiceInfo:
        return ServiceInfo(
            MQTT,
            f"{self.name}.{MQTT}",
            addresses=[socket.inet_aton("127.0.0.1")],
            port=port,
            properties=self.txt,
            server=f"{self.name}.local.",
        )

    def move(self, port: int) -> None:
        """The gateway now listens on `port`: the SRV record says so."""
        self.info = self._info(port)
        self.zeroconf.update_service(self.info)

    def close(self) -> None:
        self.zeroconf.unregister_all_services()
        self.zeroconf.close()

    def __enter__(self) -> Responder:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
