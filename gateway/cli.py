"""The command line: `gateway serve`, `gateway passwd`, `gateway config`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from pathlib import Path

from gateway import __version__
from gateway.config import Config, ConfigError, documented_defaults, load
from gateway.mqtt.auth import AuthConfigError
from gateway.mqtt.persist import StateError


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
    serve.add_argument(
        "--config",
        type=Path,
        help="TOML configuration file (default: built-in defaults, or "
        "$CONFIGURATION_DIRECTORY/gateway.toml under systemd)",
    )
    serve.add_argument("--data-dir", help="where the databases live (overrides [gateway] data_dir)")
    serve.add_argument("--bind", help="address the listeners bind to (overrides [gateway] bind)")
    serve.add_argument("--mqtt-port", type=_port, help="MQTT TCP port, 0 for any free one (overrides [mqtt] port)")
    serve.add_argument("--http-port", type=_port, help="HTTP API port, 0 for any free one (overrides [http] port)")
    # The command line of the whole appliance is fixed now so that scripts written against it keep working; this
    # listener comes with the MQTT-SN gateway.
    serve.add_argument("--mqttsn-port", type=_port, help="MQTT-SN UDP port (not built yet: accepted and ignored)")

    passwd = commands.add_parser("passwd", help="add, change or delete a user of the password file")
    passwd.add_argument("file", type=Path, help="the password file (created if missing)")
    passwd.add_argument("username")
    passwd.add_argument("-D", "--delete", action="store_true", help="delete the user")
    passwd.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input instead of prompting",
    )

    commands.add_parser("config", help="print every configuration option with its default and documentation")
    return parser


def _serve_config(args: argparse.Namespace) -> Config:
    path = args.config
    if path is None and os.environ.get("CONFIGURATION_DIRECTORY"):
        candidate = Path(os.environ["CONFIGURATION_DIRECTORY"]) / "gateway.toml"
        path = candidate if candidate.exists() else None
    config = load(path)
    if args.data_dir is not None:
        config.gateway.data_dir = args.data_dir
    if args.bind is not None:
        config.gateway.bind = args.bind
    if args.mqtt_port is not None:
        config.mqtt.port = args.mqtt_port
    if args.http_port is not None:
        config.http.port = args.http_port
    return config


def _serve(args: argparse.Namespace) -> int:
    from gateway.app import serve  # noqa: PLC0415 - keeps `gateway passwd` and `gateway config` light

    config = _serve_config(args)
    logging.basicConfig(
        level=config.gateway.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.mqttsn_port is not None:
        logging.getLogger("gateway").warning("--mqttsn-port %d ignored: no MQTT-SN gateway yet", args.mqttsn_port)
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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "passwd":
            return _passwd(args)
        print(documented_defaults(), end="")
        return 0
    except (ConfigError, AuthConfigError, StateError) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"gateway: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
