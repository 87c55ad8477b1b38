"""`siemgate check`: validate the config (done by loading it), then reach what it names.

Prints one row per check and exits non-zero if any failed. Never prints a secret.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

from siemgate.config import Config, KafkaConfig, SinkConfig
from siemgate.private_files import private_dir
from siemgate.record import all_topics
from siemgate.terminal import printable

Status = Literal["ok", "FAIL", "warn", "skip"]


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str


async def check_kafka(config: KafkaConfig, timeout: float) -> list[CheckResult]:
    from siemgate.bus.kafka import describe_kafka
    from siemgate.errors import BusUnavailable

    servers = ",".join(config.servers)
    results: list[CheckResult] = []
    oauth = config.security.oauth
    if config.security.protocol.startswith("SASL") and config.security.sasl_mechanism == "OAUTHBEARER" and oauth:
        from siemgate.bus.kafka_oauth import token_provider

        source = oauth.token_endpoint if oauth.provider == "oidc" else f"MSK IAM ({oauth.aws_region})"
        try:
            async with asyncio.timeout(timeout):
                await token_provider(oauth).token()
        except (BusUnavailable, TimeoutError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
            return [CheckResult("kafka oauth token", "FAIL", reason)]
        results.append(CheckResult("kafka oauth token", "ok", f"obtained from {source}"))
    try:
        topics, brokers = await describe_kafka(config, timeout)
    except BusUnavailable as exc:
        return [*results, CheckResult("kafka", "FAIL", str(exc))]
    results.append(CheckResult("kafka", "ok", f"reached {servers} ({brokers} broker(s))"))
    missing = [t for t in all_topics(config.topic_prefix) if t not in topics]
    if not missing:
        results.append(CheckResult("kafka topics", "ok", f"all {len(all_topics(config.topic_prefix))} exist"))
    elif config.topics.create:
        results.append(CheckResult("kafka topics", "ok", f"{len(missing)} missing, created at start: "
                                                         + ", ".join(missing)))
    else:
        results.append(CheckResult("kafka topics", "FAIL", "missing and topics.create is false: "
                                                           + ", ".join(missing)))
    return results


async def check_sink(sink: SinkConfig, timeout: float) -> CheckResult:
    from siemgate.errors import SinkError
    from siemgate.forwarders.sinks.registry import create_sink

    name = f"sink {sink.name}"
    instance = create_sink(sink.settings)
    try:
        async with asyncio.timeout(timeout):
            detail = await instance.healthcheck()
    except TimeoutError:
        return CheckResult(name, "FAIL", f"{sink.type}: no answer within {timeout:g} s")
    except SinkError as exc:
        return CheckResult(name, "FAIL", f"{sink.type}: {exc}")
    finally:
        await instance.close()
    return CheckResult(name, "ok", f"{sink.type}: {detail}")


def _writable(directory: str) -> str | None:
    path = Path(directory)
    try:
        private_dir(path)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".check-"):
            pass
    except OSError as exc:
        return f"{directory} is not writable: {exc.strerror or exc}"
    return None


def check_directories(config: Config) -> list[CheckResult]:
    results = []
    directories = {"state dir": config.state_dir, "quarantine": config.quarantine.path}
    if config.bus.type == "kafka":
        directories["spool"] = config.bus.spool.path
    else:
        directories["embedded bus"] = os.path.dirname(os.path.abspath(config.bus.path))
    for name, directory in directories.items():
        problem = _writable(directory)
        results.append(CheckResult(name, "FAIL" if problem else "ok", problem or f"{directory} is writable"))
    return results


async def run_check(config: Config, out: TextIO, *, timeout: float = 10.0) -> int:
    results = [CheckResult("config", "ok", f"{len(config.integrations)} integration(s), "
                                           f"{len(config.sinks)} sink(s), bus {config.bus.type}")]
    for integration in config.integrations:
        cidrs = ", ".join(map(str, integration.allowed_cidrs)) or "any source"
        results.append(CheckResult(
            f"integration {integration.name}", "ok",
            f"POST {integration.path}, header {integration.auth.header} "
            f"({len(integration.auth.values)} accepted value(s)), from {cidrs}, "
            f"confirmation {integration.confirmation.mode}",
        ))
    if not config.integrations:
        results.append(CheckResult("integrations", "warn", "none configured: every webhook would get 404"))
    results += await asyncio.to_thread(check_directories, config)
    if config.bus.type == "kafka" and config.bus.kafka is not None:
        results += await check_kafka(config.bus.kafka, timeout)
    for sink in config.sinks:
        results.append(await check_sink(sink, timeout))
    width = max(len(r.name) for r in results)
    for result in results:
        # A detail may quote what a sink or Kafka answered: escaped.
        out.write(f"{result.status:<4}  {printable(result.name):<{width}}  {printable(result.detail)}\n")
    failed = sum(r.status == "FAIL" for r in results)
    out.write(f"\n{'FAILED: ' + str(failed) + ' check(s)' if failed else 'all checks passed'}\n")
    return 1 if failed else 0
