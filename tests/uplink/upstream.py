"""A real upstream broker for tests: Debian's mosquitto on a free loopback port, and a paho subscriber to it.

    with Upstream(tmp_path, users={"alice": "secret"}, tls=True) as upstream:   # started, stopped at the end
        with Subscriber(upstream, "readings/#", username="alice", password="secret") as subscriber:
            ...  # something publishes to upstream.host:upstream.port (TLS: trust upstream.ca_file)
            assert subscriber.wait_for(1) == [("readings/x", b"21.5")]

`Upstream` writes its configuration, password file, ACL file and (for TLS) a throwaway CA and a server
certificate for localhost / 127.0.0.1 into a directory of its own. Start and stop it from the test's main thread:
mosquitto is killed when the thread that started it ends (PR_SET_PDEATHSIG), so that no broker outlives a test
run, even a killed one.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

HOST = "127.0.0.1"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
_RUNNING: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _kill_leftovers() -> None:
    for process in list(_RUNNING):
        process.kill()


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL the child when the thread that started it ends, whatever ends it."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_ca(directory: Path, name: str = "Throwaway Test CA") -> tuple[Path, Path]:
    """A self-signed CA valid for a day: (certificate, key) PEM files in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = name.lower().replace(" ", "-")
    cert, key = directory / f"{stem}.pem", directory / f"{stem}.key"
    _openssl(
        *("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"),
        *("-subj", f"/CN={name}", "-addext", "keyUsage=critical,keyCertSign,cRLSign"),
        *("-keyout", str(key), "-out", str(cert)),
    )
    return cert, key


def make_server_certificate(directory: Path, ca_cert: Path, ca_key: Path) -> tuple[Path, Path]:
    """A server certificate for localhost and 127.0.0.1 signed by the CA: (certificate, key) PEM files."""
    return _signed_certificate(directory, "server", "localhost", ca_cert, ca_key, "serverAuth")


def make_client_certificate(directory: Path, ca_cert: Path, ca_key: Path, name: str) -> tuple[Path, Path]:
    """A client certificate for `name` (its CN) signed by the CA, as cloud brokers ask of devices."""
    return _signed_certificate(directory, f"client-{name}", name, ca_cert, ca_key, "clientAuth")


def _signed_certificate(
    directory: Path, stem: str, common_name: str, ca_cert: Path, ca_key: Path, usage: str
) -> tuple[Path, Path]:
    cert, key, request = directory / f"{stem}.pem", directory / f"{stem}.key", directory / f"{stem}.csr"
    extensions = directory / f"{stem}.ext"
    extensions.write_text(
        ("subjectAltName=DNS:localhost,IP:127.0.0.1\n" if usage == "serverAuth" else "")
        + "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage={usage}\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    _openssl(
        *("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
        *("-subj", f"/CN={common_name}", "-keyout", str(key), "-out", str(request)),
    )
    _openssl(
        *("x509", "-req", "-in", str(request), "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial"),
        *("-days", "1", "-extfile", str(extensions), "-out", str(cert)),
    )
    return cert, key


def mosquitto_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("HOME", None)  # mosquitto's clients read ~/.config/mosquitto_pub: keep tests independent of it
    return env


class Upstream:
    """mosquitto as an upstream broker on 127.0.0.1:`port`, configured from the arguments:

    - `users`: user name -> password, written with `mosquitto_passwd`; anonymous clients stay allowed unless
      `allow_anonymous` is False (a wrong password is refused either way).
    - `tls`: the listener speaks TLS only, with a server certificate signed by a throwaway CA (`ca_file`).
    - `acl`: the text of a mosquitto ACL file (`topic write a/#`, `user alice`, ...); lines before the first
      `user` apply to anonymous clients. Denied publishes are dropped, and answered 0x87 to MQTT 5 clients.
    - `extra`: more mosquitto.conf lines (e.g. "max_inflight_messages 5\\n").

    `stop()` keeps the port, so `start()` brings the broker back where clients expect it. Messages are not
    kept across restarts (persistence is off).
    """

    def __init__(
        self,
        directory: Path,
        *,
        users: dict[str, str] | None = None,
        tls: bool = False,
        acl: str | None = None,
        allow_anonymous: bool = True,
        extra: str = "",
        port: int | None = None,
    ) -> None:
        self.directory = directory / f"upstream-{id(self):x}"
        self.directory.mkdir(parents=True)
        self.users = dict(users or {})
        self.tls = tls
        self._port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._starts = 0
        self.ca_file: Path | None = None
        self.ca_key: Path | None = None  # signs client certificates (make_client_certificate)
        lines = [
            f"listener {self._port} {HOST}",
            f"allow_anonymous {'true' if allow_anonymous else 'false'}",
            "persistence false",
            "max_queued_messages 100000",  # the default, 1000, drops messages to a subscriber that falls behind
            "log_dest stderr",
            "log_type all",
        ]
        # As root, mosquitto would switch to user mosquitto, which cannot read the test's private tmp dir (and
        # the switch clears PR_SET_PDEATHSIG).
        if os.geteuid() == 0:
            lines.append("user root")
        if users:
            password_file = self.directory / "passwords"
            for index, (name, password) in enumerate(users.items()):
                create = ["-c"] if index == 0 else []
                subprocess.run(
                    ["mosquitto_passwd", *create, "-b", str(password_file), name, password],
                    check=True,
                    capture_output=True,
                    timeout=30,
                )
            lines.append(f"password_file {password_file}")
        if tls:
            self.ca_file, self.ca_key = make_ca(self.directory / "ca")
            cert, key = make_server_certificate(self.directory, self.ca_file, self.ca_key)
            lines += [f"cafile {self.ca_file}", f"certfile {cert}", f"keyfile {key}"]
        if acl is not None:
            acl_file = self.directory / "acl"
            acl_file.write_text(acl)
            lines.append(f"acl_file {acl_file}")
        self.config = self.directory / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n" + extra)

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{HOST}:{self._port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client context trusting the throwaway CA, or None without TLS."""
        return ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else None

    def log(self) -> str:
        """Everything mosquitto logged, over all its starts."""
        return "".join(path.read_text(errors="replace") for path in sorted(self.directory.glob("mosquitto-*.log")))

    def start(self, timeout: float = 10.0) -> Upstream:
        """Start mosquitto and return once its port accepts connections."""
        if self.running:
            return self
        self._starts += 1
        log_path = self.directory / f"mosquitto-{self._starts}.log"
        with log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 (no threads of ours run at that moment)
            )
        _RUNNING.add(self._process)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self._process.returncode}:\n{log_path.read_text()}")
            try:
                socket.create_connection((HOST, self._port), timeout=1).close()
            except OSError:
                time.sleep(0.02)
                continue
            return self
        self.kill()
        raise RuntimeError(f"mosquitto did not accept connections on port {self._port}:\n{log_path.read_text()}")

    def stop(self) -> None:
        """SIGTERM (mosquitto closes its connections, sending MQTT 5 clients a DISCONNECT) and wait."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: connections are closed by the kernel, without a word."""
        self._end(signal.SIGKILL)

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing answers (a hung or unreachable broker)."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def _end(self, how: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(how)
            process.send_signal(signal.SIGCONT)  # a paused broker must run to handle SIGTERM
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        _RUNNING.discard(process)

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        *,
        retain: bool = False,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        """Publish one message with mosquitto_pub (MQTT 3.1.1), as another client of this broker would."""
        command = ["mosquitto_pub", "-h", HOST, "-p", str(self._port), "-t", topic, "-q", str(qos), "-s"]
        if retain:
            command.append("-r")
        if username is not None:
            command += ["-u", username]
        if password is not None:
            command += ["-P", password]
        if self.ca_file is not None:
            command += ["--cafile", str(self.ca_file)]
        subprocess.run(command, input=payload, check=True, capture_output=True, timeout=10, env=mosquitto_env())

    def __enter__(self) -> Upstream:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.kill()


class Subscriber:
    """A paho-mqtt client subscribed to `topic_filter` at QoS 1 on an Upstream, collecting (topic, payload).

    `start()` (or `with`) returns once the broker granted the subscription, so nothing published after it is
    missed. Messages are collected on paho's network thread; `messages` returns a copy.
    """

    def __init__(
        self,
        upstream: Upstream,
        topic_filter: str = "#",
        *,
        username: str | None = None,
        password: str | None = None,
        version: int = 4,
        client_id: str = "",
        clean_session: bool = True,
        certificate: tuple[Path, Path] | None = None,
    ) -> None:
        self.upstream = upstream
        self.topic_filter = topic_filter
        protocol = paho.MQTTv5 if version == 5 else paho.MQTTv311
        # 3.1.1 only: clean_session=False keeps the session, and what arrives for it, while this client is away.
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            clean_session=None if version == 5 else clean_session,
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        if upstream.ca_file is not None:
            cert, key = (str(path) for path in certificate) if certificate else (None, None)
            self._client.tls_set(ca_certs=str(upstream.ca_file), certfile=cert, keyfile=key)
        self._lock = threading.Condition()
        self._messages: list[tuple[str, bytes]] = []
        self._granted: list[int] | None = None
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe

    @property
    def messages(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self._messages)

    def start(self, timeout: float = 10.0) -> Subscriber:
        self._client.connect(self.upstream.host, self.upstream.port, keepalive=30)
        self._client.loop_start()
        self._client.subscribe(self.topic_filter, qos=1)
        with self._lock:
            if not self._lock.wait_for(lambda: self._granted is not None, timeout):
                self.stop()
                raise TimeoutError(f"no SUBACK for {self.topic_filter!r} from {self.upstream.url}")
            granted = self._granted or []
        if not granted or granted[0] >= 0x80:
            self.stop()
            raise RuntimeError(f"subscription to {self.topic_filter!r} refused: {granted}")
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[tuple[str, bytes]]:
        """The messages once at least `count` arrived, or those that did within `timeout` seconds."""
        with self._lock:
            self._lock.wait_for(lambda: len(self._messages) >= count, timeout)
            return list(self._messages)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        with self._lock:
            self._messages.append((message.topic, bytes(message.payload)))
            self._lock.notify_all()

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, codes: list[Any], props: Any) -> None:
        with self._lock:
            self._granted = [int(getattr(code, "value", code)) for code in codes]
            self._lock.notify_all()

    def __enter__(self) -> Subscriber:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
