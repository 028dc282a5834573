"""Start-up and shutdown of `gateway serve`, seen from outside."""

import subprocess
import sys

from tests.conftest import REPO, Client, Gateway, mosquitto_env


def test_logs_listening_line_and_routes_mosquitto_pub_to_paho(gateway: Gateway, clients: list[Client]) -> None:
    sub = Client(gateway.mqtt_port, "watcher")
    clients.append(sub)
    assert sub.subscribe("sensors/#", 1) == [1]
    subprocess.run(
        ["mosquitto_pub", "-p", str(gateway.mqtt_port), "-t", "sensors/kitchen/temp", "-m", "21.5", "-q", "1"],
        check=True,
        timeout=10,
        env=mosquitto_env(),
    )
    message = sub.expect()
    assert (message.topic, message.payload, message.qos) == ("sensors/kitchen/temp", b"21.5", 1)


def test_sigterm_stops_cleanly(gateway: Gateway) -> None:
    assert gateway.stop() == 0
    assert "stopped" in gateway.log()


def test_bad_config_key_is_refused_with_file_key_and_reason(tmp_path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[mqtt]\nportt = 1883\n")
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert str(config) in result.stderr and "'portt'" in result.stderr and "[mqtt]" in result.stderr


def test_the_mqttsn_port_option_sets_the_udp_listener(gateway_factory) -> None:
    """`--mqttsn-port 0` picks a free UDP port, logged with the other listeners; `[mqttsn] enabled = false` has none."""
    gateway = gateway_factory(extra_args=("--mqttsn-port", "0"))
    assert set(gateway.endpoints) == {"mqtt", "mqtt-sn", "mqtt-ws", "http"} and gateway.mqttsn_port > 0
    gateway.stop()
    off = gateway_factory("[mqttsn]\nenabled = false\n", name="off")
    assert set(off.endpoints) == {"mqtt", "mqtt-ws", "http"}
