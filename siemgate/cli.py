"""The `siemgate` command (docs/SPEC.md, "Commands")."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from siemgate import __version__
from siemgate.config import Config, load_config
from siemgate.errors import ConfigError, SiemgateError

if TYPE_CHECKING:
    from siemgate.reload import ConfigReloader


def _run_async(main: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop

        return uvloop.run(main)
    except ImportError:
        return asyncio.run(main)


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.config)


def _serve(args: argparse.Namespace,
           serve: Callable[[Config, ConfigReloader], Coroutine[Any, Any, None]]) -> int:
    """A long-running command: load the config, configure logging, serve until SIGTERM/SIGINT,
    reloading the config on SIGHUP or when the file changes (siemgate.reload)."""
    from siemgate import logs
    from siemgate.reload import ConfigReloader

    config = _load(args)
    logs.configure(config.log_level)

    async def main() -> int:
        await serve(config, ConfigReloader(args.config, config))
        return 0

    return _run_async(main())


def cmd_ingest(args: argparse.Namespace) -> int:
    from siemgate.bus.spooling import opened_spooling_publisher
    from siemgate.ingest.server import serve

    async def ingest(config: Config, reloader: ConfigReloader) -> None:
        if config.bus.type != "kafka" or config.bus.kafka is None:
            raise ConfigError(
                "bus.type",
                "`siemgate ingest` produces to Kafka; with bus.type: embedded, `siemgate run` runs the ingest and "
                "the forwarders in one process",
            )
        async with opened_spooling_publisher(config.bus.kafka, config.bus.spool) as publisher:
            await serve(config, publisher, reloader)

    return _serve(args, ingest)


def cmd_run(args: argparse.Namespace) -> int:
    from siemgate.run import serve_all

    return _serve(args, serve_all)


def cmd_forward(args: argparse.Namespace) -> int:
    from siemgate.forwarders.service import serve_forward

    return _serve(args, lambda config, reloader: serve_forward(config, args.sink or (), reloader))


def cmd_dlq(args: argparse.Namespace) -> int:
    from siemgate.forwarders.dlq_cli import list_dead_letters, replay_dead_letters

    config = _load(args)
    if args.action == "list":
        return _run_async(list_dead_letters(config, args.sink, sys.stdout))
    return _run_async(replay_dead_letters(config, args.sink, sys.stdout))


def cmd_check(args: argparse.Namespace) -> int:
    from siemgate.check import run_check

    config = _load(args)
    return _run_async(run_check(config, sys.stdout, timeout=args.timeout))


def cmd_es_setup(args: argparse.Namespace) -> int:
    from siemgate.forwarders.sinks.elasticsearch_setup import run_setup

    config = _load(args)
    return _run_async(run_setup(config, args.sink or (), sys.stdout))


_STANDINS = {"splunk-hec": "siemgate.testing.splunk_hec", "elasticsearch": "siemgate.testing.elasticsearch"}


def cmd_standin(args: argparse.Namespace) -> int:
    import importlib

    from siemgate.testing.http_server import run_main

    module = importlib.import_module(_STANDINS[args.kind])
    return run_main(lambda: module.serve(args))


def cmd_simulate(args: argparse.Namespace) -> int:
    from siemgate import simulate

    return simulate.main(args)


def cmd_confirmations(args: argparse.Namespace) -> int:
    from siemgate.ingest.confirmation_cli import list_confirmations

    return list_confirmations(_load(args), sys.stdout)


def cmd_confirm(args: argparse.Namespace) -> int:
    from siemgate.ingest.confirmation_cli import confirm

    config = _load(args)
    return _run_async(confirm(config, args.integration, sys.stdout))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="siemgate",
        description="Receive security-event webhooks, put them on Kafka, forward them to SIEMs.",
    )
    parser.add_argument("--version", action="version", version=f"siemgate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=handler)
        return sub

    def with_config(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("-c", "--config", required=True, metavar="FILE", help="the siemgate YAML config")
        return sub

    with_config(command("run", cmd_run, "run the ingest and every sink's forwarder in one process"))
    with_config(command("ingest", cmd_ingest, "run the HTTP ingest (webhook receiver) only"))
    forward = with_config(command("forward", cmd_forward, "run the forwarders: consume the bus, deliver to sinks"))
    forward.add_argument("--sink", action="append", metavar="NAME", help="only this sink (repeatable; default all)")
    dlq = with_config(command("dlq", cmd_dlq, "list or replay a sink's dead letters"))
    dlq.add_argument("action", choices=["list", "replay"])
    dlq.add_argument("--sink", required=True, metavar="NAME", help="the sink whose dead letters to read")
    check = with_config(command("check", cmd_check, "validate the config and reach Kafka and every sink"))
    check.add_argument("--timeout", type=float, default=10.0, help="seconds allowed per check (default 10)")
    es_setup = with_config(command("es-setup", cmd_es_setup,
                                   "install the ECS index template and data stream of the elasticsearch sinks"))
    es_setup.add_argument("--sink", action="append", metavar="NAME", help="only this sink (repeatable; default all)")
    standin = command("standin", cmd_standin, "run a Splunk HEC or Elasticsearch stand-in (tests, demos, benchmarks)")
    kinds = standin.add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind, module_name in _STANDINS.items():
        import importlib

        module = importlib.import_module(module_name)
        module.add_arguments(kinds.add_parser(kind, help=(module.__doc__ or "").strip().splitlines()[0]))
    from siemgate import simulate

    simulate.add_arguments(command("simulate", cmd_simulate, "behave like the Application Security sender"))
    with_config(command("confirmations", cmd_confirmations, "list confirmation links and integration states"))
    confirm = with_config(command("confirm", cmd_confirm, "request an integration's pending confirmation link"))
    confirm.add_argument("integration", help="the integration's name")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(f"siemgate: {exc}", file=sys.stderr)
        return 2
    except SiemgateError as exc:
        print(f"siemgate: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
