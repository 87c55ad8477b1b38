"""The `siemgate` command (docs/SPEC.md, "Commands"): the command-line front of the composition
root. The long-running processes are built by siemgate.serve; the one-shot commands call
their module (dlq, check, es-setup, confirm ...)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from types import ModuleType
from typing import TYPE_CHECKING, Any

from siemgate import __version__
from siemgate.config import Config, load_config
from siemgate.errors import ConfigError, SiemgateError
from siemgate.terminal import printable

if TYPE_CHECKING:
    from siemgate.reload import ConfigReloader


def _run_async(main: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop

        return uvloop.run(main)
    except ImportError:
        return asyncio.run(main)


def _load(args: argparse.Namespace) -> Config:
    """The config; and logging as `run` has it (JSON lines on stderr, secrets redacted, the
    libraries' loggers quiet unless log_level is debug), so that a one-shot command (check,
    dlq ...) never prints a library's raw log line (aiokafka's reconnect errors) in its output."""
    from siemgate import logs

    config = load_config(args.config)
    logs.configure(config.log_level)
    return config


def _serve(args: argparse.Namespace,
           serve: Callable[[Config, ConfigReloader], Coroutine[Any, Any, None]]) -> int:
    """A long-running command: load the config, configure logging, serve until SIGTERM/SIGINT,
    reloading the config on SIGHUP or when the file changes (siemgate.reload)."""
    from siemgate.reload import ConfigReloader

    config = _load(args)

    async def main() -> int:
        from siemgate import diagnostics

        diagnostics.install()  # kill -USR1: every task's chain of awaits to stderr
        await serve(config, ConfigReloader(args.config, config))
        return 0

    return _run_async(main())


def cmd_ingest(args: argparse.Namespace) -> int:
    from siemgate.serve import serve_ingest

    return _serve(args, serve_ingest)


def cmd_run(args: argparse.Namespace) -> int:
    from siemgate.serve import serve_run

    return _serve(args, serve_run)


def cmd_forward(args: argparse.Namespace) -> int:
    from siemgate.serve import serve_forward

    return _serve(args, lambda config, reloader: serve_forward(config, args.sink or (), reloader))


def cmd_dlq(args: argparse.Namespace) -> int:
    from siemgate.forwarders.dlq_cli import list_dead_letters, replay_dead_letters

    config = _load(args)
    if args.action == "list":
        return _run_async(list_dead_letters(config, args.sink, sys.stdout))
    return _run_async(replay_dead_letters(config, args.sink, sys.stdout))


def cmd_spool(args: argparse.Namespace) -> int:
    from siemgate.bus.spool_cli import drain_spool

    config = _load(args)
    return _run_async(drain_spool(config, args.timeout, sys.stdout))


def cmd_check(args: argparse.Namespace) -> int:
    from siemgate.check import run_check

    config = _load(args)
    return _run_async(run_check(config, sys.stdout, timeout=args.timeout))


def cmd_es_setup(args: argparse.Namespace) -> int:
    from siemgate.forwarders.sinks.elasticsearch_setup import run_setup

    config = _load(args)
    return _run_async(run_setup(config, args.sink or (), sys.stdout))


# The stand-ins live in their own distribution (standins/ in siemgate's repository), not in
# the siemgate package: the command works when it is installed, and says what to install when not.
_STANDINS = {"splunk-hec": "siemgate_standins.splunk_hec", "elasticsearch": "siemgate_standins.elasticsearch",
             "sentinel": "siemgate_standins.sentinel"}
_STANDINS_MISSING = ("the stand-ins are not installed ({error}): run `pip install -e ./standins` "
                     "in a siemgate checkout (`make test` and `make kafka-demo` install them)")


def _standin_module(name: str) -> tuple[ModuleType | None, str]:
    """The stand-in's module, or None and why it cannot be imported."""
    import importlib

    try:
        return importlib.import_module(name), ""
    except ModuleNotFoundError as exc:
        return None, str(exc)


def cmd_standin(args: argparse.Namespace) -> int:
    module, error = _standin_module(_STANDINS[args.kind])
    if module is None:
        print(f"siemgate: {_STANDINS_MISSING.format(error=error)}", file=sys.stderr)
        return 2
    from siemgate_standins.http_server import run_main

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


def cmd_quarantine(args: argparse.Namespace) -> int:
    from siemgate.ingest.quarantine_cli import list_quarantine, replay, show_quarantined

    config = _load(args)
    if args.action == "list":
        return list_quarantine(config, sys.stdout)
    if not args.id:
        print(f"siemgate: quarantine {args.action} needs the body's ID (`siemgate quarantine list` shows them)",
              file=sys.stderr)
        return 2
    if args.action == "show":
        return show_quarantined(config, args.id, sys.stdout)
    # `resend`: the command's first name, kept as an alias of `replay`.
    return _run_async(replay(config, args.id, sys.stdout, integration=args.integration, again=args.again,
                             charset=args.charset))


def _seconds(text: str) -> float:
    """A --timeout: a positive, finite number of seconds (else a usage error, exit 2)."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


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
    spool = with_config(command("spool", cmd_spool, "send a spool left on a volume to Kafka (e.g. of a removed "
                                                    "replica), then exit: 0 once empty, 1 with events left"))
    spool.add_argument("action", choices=["drain"])
    spool.add_argument("--timeout", type=_seconds, default=None, metavar="S",
                       help="give up after S seconds (default bus.spool.drain_timeout_seconds)")
    check = with_config(command("check", cmd_check, "validate the config and reach Kafka and every sink"))
    check.add_argument("--timeout", type=_seconds, default=10.0, help="seconds allowed per check (default 10)")
    es_setup = with_config(command("es-setup", cmd_es_setup,
                                   "install the ECS index template and data stream of the elasticsearch sinks"))
    es_setup.add_argument("--sink", action="append", metavar="NAME", help="only this sink (repeatable; default all)")
    standin = command("standin", cmd_standin,
                      "run a Splunk HEC, Elasticsearch or Sentinel stand-in (tests, demos, benchmarks)")
    kinds = standin.add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind, module_name in _STANDINS.items():
        module, _ = _standin_module(module_name)
        if module is None:  # `siemgate standin KIND ...` then says what to install, whatever its options
            kinds.add_parser(kind, help="(not installed: pip install -e ./standins)", add_help=False,
                             prefix_chars="\0").add_argument("arguments", nargs="*", help=argparse.SUPPRESS)
        else:
            module.add_arguments(kinds.add_parser(kind, help=(module.__doc__ or "").strip().splitlines()[0]))
    from siemgate import simulate

    simulate.add_arguments(command("simulate", cmd_simulate, "behave like the Application Security sender"))
    with_config(command("confirmations", cmd_confirmations, "list confirmation links and integration states"))
    confirm = with_config(command("confirm", cmd_confirm, "request an integration's pending confirmation link"))
    confirm.add_argument("integration", help="the integration's name")
    quarantine = with_config(command("quarantine", cmd_quarantine,
                                     "list the bodies answered 400/413 and kept, or resend one once it parses"))
    quarantine.add_argument("action", choices=["list", "show", "replay", "resend"],
                            help="list the kept bodies, show one, or replay one (resend: the same as replay)")
    quarantine.add_argument("id", nargs="?", metavar="ID", help="the body to show or replay (from `list`)")
    quarantine.add_argument("--integration", metavar="NAME", help="replay as this integration (default: its own)")
    quarantine.add_argument("--again", action="store_true",
                            help="replay every event, also those already sent on")
    quarantine.add_argument("--charset", metavar="NAME",
                            help="read a body that is not UTF-8 in this charset (e.g. windows-1252; default: the "
                                 "one its request declared, when recorded)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = int(args.handler(args))
        sys.stdout.flush()  # here, not at exit: a closed pipe is then caught below
        return code
    except BrokenPipeError:
        # The output was piped to a reader that stopped (`| head`): no traceback. Python would
        # flush stdout again at exit and complain; point it at /dev/null first.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141  # 128 + SIGPIPE, as a tool the signal stopped
    except ConfigError as exc:
        print(f"siemgate: {printable(exc)}", file=sys.stderr)
        return 2
    except SiemgateError as exc:
        print(f"siemgate: {printable(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
