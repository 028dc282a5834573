"""The command line: `gateway serve`, `gateway passwd`, `gateway config`, `gateway backup`, `gateway restore`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

from gateway import __version__
from gateway.config import Config, ConfigError, documented_defaults, load
from gateway.mqtt.auth import AuthConfigError
from gateway.mqtt.persist import StateError
from gateway.store import backup
from gateway.store.backup import BackupError
from gateway.uplink.url import UrlError, parse_url

# The gateway sends nothing until its archive is complete, which on a Pi with a large store takes a while.
_BACKUP_HTTP_TIMEOUT = 600.0


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP/UDP port (0-65535; 0 picks a free one)")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="Edge gateway: an MQTT broker that stores readings.")
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    _config_arguments(serve)
    serve.add_argument("--bind", help="address the listeners bind to (overrides [gateway] bind)")
    serve.add_argument("--mqtt-port", type=_port, help="MQTT TCP port, 0 for any free one (overrides [mqtt] port)")
    serve.add_argument("--http-port", type=_port, help="HTTP API port, 0 for any free one (overrides [http] port)")
    serve.add_argument(
        "--ws-port", type=_port, help="MQTT-over-WebSocket port, 0 for any free one (overrides [mqtt] ws_port)"
    )
    # The command line of the whole appliance is fixed now so that scripts written against it keep working; this
    # listener comes with the MQTT-SN gateway.
    serve.add_argument("--mqttsn-port", type=_port, help="MQTT-SN UDP port (0: a free one)")
    serve.add_argument(
        "--uplink",
        metavar="URL",
        help="forward readings to this upstream broker, mqtt://[user[:password]@]host[:port] or mqtts://... "
        "(overrides [uplink] url)",
    )

    passwd = commands.add_parser("passwd", help="add, change or delete a user of the password file")
    passwd.add_argument("file", type=Path, help="the password file (created if missing)")
    passwd.add_argument("username")
    passwd.add_argument("-D", "--delete", action="store_true", help="delete the user")
    passwd.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input instead of prompting",
    )

    config = commands.add_parser(
        "config", help="print every configuration option with its default and documentation, or check a file"
    )
    config.add_argument(
        "--check",
        type=Path,
        metavar="FILE",
        help="only check FILE: print what is wrong and exit 2, or say it is valid (the SD image checks a "
        "gateway.toml from the boot partition this way before it installs it)",
    )

    save = commands.add_parser(
        "backup", help="write a consistent snapshot of the databases to FILE (the gateway may be running)"
    )
    save.add_argument("file", metavar="FILE", help="the archive to write (a .tar.gz); - for standard output")
    _config_arguments(save)
    save.add_argument(
        "--url",
        help="base URL of the running gateway's HTTP API, e.g. http://127.0.0.1:8080 "
        "(default: from [gateway] bind and [http] port)",
    )
    save.add_argument("--token", help="the HTTP API token (default: [http] token)")

    restore = commands.add_parser("restore", help="replace the databases with a backup (stop the gateway first)")
    restore.add_argument("file", metavar="FILE", type=Path, help="an archive written by `gateway backup`")
    _config_arguments(restore)
    return parser


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        help="TOML configuration file (default: built-in defaults, or "
        "$CONFIGURATION_DIRECTORY/gateway.toml under systemd)",
    )
    parser.add_argument("--data-dir", help="where the databases live (overrides [gateway] data_dir)")


def _config(args: argparse.Namespace) -> Config:
    path = args.config
    if path is None and os.environ.get("CONFIGURATION_DIRECTORY"):
        candidate = Path(os.environ["CONFIGURATION_DIRECTORY"]) / "gateway.toml"
        path = candidate if candidate.exists() else None
    config = load(path)
    if args.data_dir is not None:
        config.gateway.data_dir = args.data_dir
    return config


def _serve_config(args: argparse.Namespace) -> Config:
    config = _config(args)
    if args.bind is not None:
        config.gateway.bind = args.bind
    if args.mqtt_port is not None:
        config.mqtt.port = args.mqtt_port
    if args.http_port is not None:
        config.http.port = args.http_port
    if args.ws_port is not None:
        config.mqtt.ws_port = args.ws_port
    if args.mqttsn_port is not None:
        config.mqttsn.port = args.mqttsn_port
    if args.uplink is not None:
        try:
            parse_url(args.uplink)
        except UrlError as exc:
            raise ConfigError(f"--uplink {exc}") from None
        config.uplink.url = args.uplink
    return config


def _serve(args: argparse.Namespace) -> int:
    from gateway.app import serve  # noqa: PLC0415 - keeps `gateway passwd` and `gateway config` light

    config = _serve_config(args)
    logging.basicConfig(
        level=config.gateway.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    asyncio.run(serve(config))
    return 0


def _passwd(args: argparse.Namespace) -> int:
    from gateway.mqtt.passwords import PasswordFile  # noqa: PLC0415 - argon2 is loaded only when used

    passwords = PasswordFile.load(args.file) if args.file.exists() else PasswordFile.empty()
    if args.delete:
        if not passwords.delete_user(args.username):
            print(f"gateway passwd: no user {args.username!r} in {args.file}", file=sys.stderr)
            return 1
    else:
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = getpass.getpass(f"Password for {args.username}: ")
            if getpass.getpass("Again: ") != password:
                print("gateway passwd: the passwords differ; nothing changed", file=sys.stderr)
                return 1
        if not password:
            print("gateway passwd: an empty password is not allowed; nothing changed", file=sys.stderr)
            return 1
        passwords.set_password(args.username, password)
    passwords.save(args.file)
    return 0


def _api_url(config: Config) -> str:
    """The running gateway's HTTP API as seen from this machine."""
    host = config.gateway.bind
    if host in ("", "0.0.0.0", "::"):  # listening everywhere: loopback reaches it
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.http.port}"


def _http_reason(error: urllib.error.HTTPError) -> str:
    body = error.read(64 << 10)
    try:
        reason = json.loads(body)["reason"]
        return str(reason)
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace").strip()[:200] or str(error.reason)


def _fetch_backup(base_url: str, token: str, hint: str) -> BinaryIO:
    request = urllib.request.Request(base_url.rstrip("/") + "/api/backup")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    # No proxy: the gateway is on this machine or its local network, and a proxy from the environment (http_proxy)
    # would only stand in the way.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        response: BinaryIO = opener.open(request, timeout=_BACKUP_HTTP_TIMEOUT)
    except urllib.error.HTTPError as error:
        reason = _http_reason(error)
        raise BackupError(f"the gateway at {base_url} refused the backup (HTTP {error.code}): {reason}") from None
    except (urllib.error.URLError, OSError) as error:
        cause = error.reason if isinstance(error, urllib.error.URLError) else error
        raise BackupError(f"cannot reach the gateway at {base_url} ({cause}){hint}") from None
    return response


def _write_output(file: str, source: BinaryIO, *, verify: bool) -> int:
    """Copy `source` to FILE (- for standard output); a file appears only once complete. Returns its size."""
    if file == "-":
        size = 0
        while chunk := source.read(1 << 20):
            sys.stdout.buffer.write(chunk)
            size += len(chunk)
        sys.stdout.buffer.flush()
        return size
    target = Path(file)
    partial = target.with_name(target.name + ".partial")
    try:
        size = 0
        with partial.open("wb") as out:
            while chunk := source.read(1 << 20):
                out.write(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        if verify:  # a connection cut short must not leave a FILE that looks like a backup
            backup.check_archive(partial)
        partial.replace(target)
        return size
    except OSError as exc:
        # Writing FILE, or reading the archive from the gateway (a connection reset or timeout) failed.
        raise BackupError(f"backup to {target} failed: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)


def _backup(args: argparse.Namespace) -> int:
    config = _config(args)
    data_dir = config.data_path()
    size: int | None = None
    if args.url is None:
        try:
            size = _backup_offline(args.file, data_dir)
            source_text = f"the databases in {data_dir} (no gateway running)"
        except backup.GatewayRunning:
            pass  # a gateway holds them: ask it, below, to checkpoint its open databases
    if size is None:
        url = args.url or _api_url(config)
        token = args.token if args.token is not None else config.http.token
        # Without --url the databases were found locked: a gateway runs, but maybe not where the config says.
        hint = "" if args.url else f"; {data_dir} is in use by a running gateway: give its HTTP API with --url"
        with _fetch_backup(url, token, hint) as response:
            size = _write_output(args.file, response, verify=True)
        source_text = f"the running gateway at {url}"
    where = "standard output" if args.file == "-" else args.file
    info = sys.stderr if args.file == "-" else sys.stdout
    print(f"gateway backup: wrote {where} ({size} bytes) from {source_text}", file=info)
    return 0


def _backup_offline(file: str, data_dir: Path) -> int:
    with backup.opened_databases(data_dir) as databases:
        if not databases:
            raise BackupError(f"no gateway databases in {data_dir}: is --data-dir (or [gateway] data_dir) right?")
        archive = backup.backup_archive(databases, backup.scratch_dir(data_dir))
    try:
        with archive.open("rb") as source:
            return _write_output(file, source, verify=False)
    finally:
        archive.unlink(missing_ok=True)


def _restore(args: argparse.Namespace) -> int:
    config = _config(args)
    data_dir = config.data_path()
    aside = backup.restore_archive(args.file, data_dir)
    print(f"gateway restore: restored {args.file} into {data_dir}")
    if aside is not None:
        print(f"gateway restore: the previous data was moved to {aside} (delete it once you no longer need it)")
    print("gateway restore: start the gateway again (e.g. `systemctl start gateway`)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "passwd":
            return _passwd(args)
        if args.command == "backup":
            return _backup(args)
        if args.command == "restore":
            return _restore(args)
        if args.check is not None:
            load(args.check)
            print(f"gateway config: {args.check} is valid")
            return 0
        print(documented_defaults(), end="")
        return 0
    except (ConfigError, AuthConfigError, StateError) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    except BackupError as exc:
        print(f"gateway {args.command}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"gateway: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
