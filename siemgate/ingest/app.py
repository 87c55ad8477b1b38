"""The ingest ASGI app: one POST route per integration, plus /healthz, /readyz and /metrics
(the latter only without `metrics:`; with it, `app.state.metrics_route` is served by the
composition root on a listener of its own).

What a 200 means: every event of the batch is durable. With `siemgate ingest` on Kafka the
publisher is a `SpoolingPublisher`: each event is acknowledged by Kafka (acks=all), or, when
Kafka does not acknowledge within `bus.spool.ack_deadline_seconds`, fsync'd in the local
spool, from which it goes to Kafka once Kafka takes writes again (after a restart too).
Everything else the sender sees is deliberate, because it never resends (docs/SPEC.md, "HTTP"):
401/403 only for real authentication failures (they disable the integration), 400/413 with
the body quarantined, 503 only when the publisher cannot make the batch durable at all
(Kafka unavailable AND the spool full or unwritable), logged as data loss.

/readyz is 200 while the publisher accepts writes: Kafka does, or the spool does; and 503
from the first stop signal on (`IngestContext.stop_signal`): the requests that still reach the
process are answered as always (durably: 200 once on Kafka or in the spool, never a 5xx
because it is stopping), then the publisher drains its spool before exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client import Counter as MetricCounter
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from siemgate.bus.base import DrainingPublisher, Publisher, SpoolReporter, StallReporter
from siemgate.bus.sqlite_writer import StorageReporter
from siemgate.config import Config, IntegrationConfig
from siemgate.errors import (
    BadGzip,
    BodyError,
    BusUnavailable,
    ConfirmationRefused,
    InvalidBatch,
    NotJson,
    RecordTooLarge,
    SiemgateError,
    TooManyEvents,
)
from siemgate.foreground import Foreground
from siemgate.ingest import budget as memory
from siemgate.ingest.auth import authenticated
from siemgate.ingest.batch import Batch, BatchParser
from siemgate.ingest.body import content_coding, read_body
from siemgate.ingest.confirmation import MAX_LINK_CHARS, screen_links
from siemgate.ingest.confirmation_fetch import request_link
from siemgate.ingest.confirmation_store import ConfirmationStore
from siemgate.ingest.metrics import IngestMetrics
from siemgate.ingest.peer import allowed, client_address
from siemgate.ingest.quarantine import Quarantine
from siemgate.record import Record, SeverityScheme

log = logging.getLogger("siemgate.ingest")

_EMPTY_401 = Response(status_code=401)
_EMPTY_403 = Response(status_code=403)
CLIENT_CLOSED: Final = 499  # siemgate_ingest_requests_total's code of a body the client abandoned
_CLIENT_GONE = Response(status_code=CLIENT_CLOSED)  # never sent: the connection is gone
_SEVERITY = operator.itemgetter(Record._fields.index("severity"))  # record.severity, in C


@dataclass
class IngestContext:
    """What every request handler shares; owned by the app's lifespan."""

    config: Config
    publisher: Publisher
    prefix: str
    metrics: IngestMetrics = field(default_factory=IngestMetrics)
    quarantine: Quarantine = field(init=False)
    store: ConfirmationStore = field(init=False)
    # limits.memory_budget_bytes: the bodies in flight, and their parsed forms.
    budget: memory.MemoryBudget = field(init=False)
    background: set[asyncio.Task[None]] = field(default_factory=set)
    # Auto mode: the one task per integration requesting its pending link (latest link wins).
    confirming: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    # In `siemgate run`: the forwarders on the same loop wait while requests are answered.
    foreground: Foreground | None = None
    # Set by the first SIGTERM/SIGINT: /readyz answers 503 from then on.
    stopping: bool = False

    def __post_init__(self) -> None:
        self.quarantine = Quarantine(self.config.quarantine.path, self.config.quarantine.max_bytes)
        self.store = ConfirmationStore(self.config.state_dir)
        self.budget = budget = memory.MemoryBudget(self.config.limits.memory_budget_bytes)
        self.metrics.watch_budget(lambda: budget.in_use, lambda: budget.limit, lambda: budget.waiting)

    def stop_signal(self, count: int) -> None:
        """The process got its `count`th SIGTERM/SIGINT (called on the event loop). The first:
        not ready any more, and the publisher prepares its drain before exit; a later one ends
        that drain at once (what is left stays in the spool)."""
        publisher = self.publisher
        if count == 1:
            self.stopping = True
            log.info("stopping: /readyz answers 503; requests in flight are answered, then the spool "
                     "(if any) is sent to Kafka before exit")
            if isinstance(publisher, DrainingPublisher):
                publisher.begin_stopping()
        elif isinstance(publisher, DrainingPublisher):
            log.warning("a second stop signal: ending the spool's drain now; what is left stays in the spool")
            publisher.abandon_drain()

    def spawn(self, coroutine: Coroutine[object, object, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task


def _error(status: int, message: str, **extra: object) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


class WebhookEndpoint:
    """POST handler of one integration."""

    def __init__(self, integration: IntegrationConfig, context: IngestContext,
                 severity: SeverityScheme | None = None) -> None:
        """`severity`: the scheme of the config this endpoint serves (default the context's)."""
        self.integration = integration
        self.context = context
        self._parser = BatchParser(integration, context.prefix,
                                   severity or context.config.normalize.scheme_for(integration.name))
        # The codes answered (499, a body the client abandoned, is none: its child is made when counted).
        self._requests = {code: context.metrics.requests.labels(integration.name, str(code))
                          for code in (200, 400, 401, 403, 408, 413, 415, 503)}
        self._activity = context.metrics.activity
        # siemgate_ingest_events_total's children of this integration, by severity (as they come).
        self._events: dict[str, MetricCounter] = {}

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        foreground = self.context.foreground
        if foreground is None:
            response = await self._handle(request)
        else:
            with foreground.serving():
                response = await self._handle(request)
        counter = self._requests.get(response.status_code)
        if counter is None:
            counter = self.context.metrics.requests.labels(self.integration.name, str(response.status_code))
        counter.inc()
        self.context.metrics.ack_seconds.observe(time.perf_counter() - started)
        if response.status_code != 200:
            self._activity.rejected(self.integration.name, response.status_code)
        return response

    async def _handle(self, request: Request) -> Response:
        config = self.context.config
        integration = self.integration
        headers = request.headers
        peer = client_address(
            request.client.host if request.client else None,
            headers.getlist("x-forwarded-for"),  # every line: the proxy's own is the last
            config.listen.trusted_proxies,
        )
        if not allowed(peer, integration.allowed_cidrs):
            log.warning("refused a request from outside allowed_cidrs (403)",
                        extra={"integration": integration.name, "peer": peer})
            return _EMPTY_403
        if not authenticated(headers.get(integration.auth.header), integration.auth):
            log.warning("refused a request with a missing or wrong auth header (401)",
                        extra={"integration": integration.name, "peer": peer})
            return _EMPTY_401
        try:
            coding = content_coding(headers.getlist("content-encoding"),  # every line: one list
                                    transfer=headers.getlist("transfer-encoding"))
        except BodyError as exc:
            return self._refused(exc, peer)
        length = _content_length(headers.get("content-length"))
        with self.context.budget.claim(memory.body_claim(coding, length, config.limits.max_body_bytes)) as claim:
            return await self._accept(request, peer, coding, length, claim)

    def _refused(self, exc: BodyError, peer: str) -> Response:
        log.warning("refused a body", extra={"integration": self.integration.name, "peer": peer,
                                             "status": exc.status, "reason": str(exc)})
        return _error(exc.status, str(exc))

    async def _accept(self, request: Request, peer: str, coding: str, length: int | None,
                      claim: memory.Claim) -> Response:
        """Read, parse and publish the body, holding `claim` (its share of the memory budget)."""
        config = self.context.config
        integration = self.integration
        try:
            body = await read_body(
                request.stream(),
                coding=coding,
                limit=config.limits.max_body_bytes,
                timeout=config.limits.body_timeout_seconds,
                content_length=length,
                claim=claim,
            )
        except BadGzip as exc:
            return await self._reject(400, str(exc), exc.raw, peer)
        except BodyError as exc:
            return self._refused(exc, peer)
        except ClientDisconnect:
            # Nothing is stored and no answer can be sent: not a refusal of ours (400 said one).
            # Counted as 499 (nginx's "client closed request"): a batch the sender lost itself.
            log.warning("the client closed the connection before its body was complete: nothing stored, "
                        "no answer sent (counted as code 499)",
                        extra={"integration": integration.name, "peer": peer})
            return _CLIENT_GONE
        charset = _charset(request.headers.get("content-type"))
        try:
            batch = self._parser.parse(body, peer=peer, max_events=config.limits.max_events_per_batch,
                                       charset=charset)
        except (NotJson, InvalidBatch) as exc:
            return await self._reject(400, str(exc), body, peer, charset)
        except TooManyEvents as exc:
            return await self._reject(413, str(exc), body, peer, charset)
        try:
            await self.context.publisher.publish(batch.records)
        except RecordTooLarge as exc:
            return await self._reject(413, str(exc), body, peer, charset)
        except BusUnavailable as exc:
            log.error(
                f"answered 503 ({exc}): the batch is not durable and the sender will NOT resend it",
                extra={"integration": integration.name, "events": len(batch.records), "reason": str(exc)},
            )
            return _error(503, "the event bus is unavailable")
        self._count(batch)
        if batch.confirmation_links:
            try:
                await self._confirmations(batch)
            except (OSError, SiemgateError) as exc:
                # The batch is durable: its answer stays 200. The link is on the control topic.
                log.error(f"could not record a confirmation link: {exc}. Fix state_dir; the link "
                          "is also in the control topic's confirmation record",
                          extra={"integration": integration.name})
        # JSONResponse({"accepted": n})'s bytes and headers, without its JSON encoder.
        return Response(b'{"accepted":%d}' % len(batch.records), media_type="application/json")

    def _count(self, batch: Batch) -> None:
        events = self._events
        # Events by severity, counted in C.
        for severity, count in Counter(map(_SEVERITY, batch.records)).items():
            child = events.get(severity)
            if child is None:
                child = events[severity] = self.context.metrics.events.labels(self.integration.name, severity)
            child.inc(count)
        self._activity.accepted(self.integration.name, len(batch.records))
        if batch.lone_surrogates:
            self.context.metrics.lone_surrogates.labels(self.integration.name).inc(batch.lone_surrogates)

    async def _reject(self, status: int, reason: str, body: bytes, peer: str, charset: str | None = None) -> Response:
        ident = await self.context.quarantine.save(
            integration=self.integration.name, body=body, reason=reason, peer=peer, status=status,
            authenticated=True,  # every refusal that keeps a body comes after the auth check
            charset=charset,  # the replay reads a body that is not UTF-8 in it
        )
        if ident is not None:
            self.context.metrics.quarantined.labels(self.integration.name).inc()
        return _error(status, reason, quarantined=ident)

    async def _confirmations(self, batch: Batch) -> None:
        name = self.integration.name
        received_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        screen = screen_links(batch.confirmation_links)
        refused = self.context.metrics.links_refused
        if screen.too_long:
            refused.labels(name, "too_long").inc(len(screen.too_long))
            log.warning(
                f"refused {len(screen.too_long)} confirmation link(s) longer than {MAX_LINK_CHARS:,} characters "
                f"(the longest: {max(screen.too_long):,}): not recorded, not requested; the messages are on "
                "the control topic",
                extra={"integration": name},
            )
        if screen.superseded:
            refused.labels(name, "superseded").inc(screen.superseded)
            log.warning(
                f"{screen.superseded + 1} different confirmation links in one batch: only its last is recorded "
                "(one link per integration); the messages are on the control topic",
                extra={"integration": name},
            )
        link = screen.link
        if link is None:
            return
        await self.context.store.record_link(name, link, received_at)
        self.context.metrics.set_integration_state(name, self.context.store.state(name))
        if self.integration.confirmation.mode == "auto":
            running = self.context.confirming.get(name)
            if running is None or running.done():
                log.info("confirmation link received; requesting it (mode: auto)",
                         extra={"integration": name, "link": link})
                self.context.confirming[name] = self.context.spawn(self._auto_confirm_pending())
            else:
                # Deferred: the running task requests the latest link once its request ends.
                log.info("confirmation link received while another is being requested; it is "
                         "requested next if it is still the latest", extra={"integration": name, "link": link})
        else:
            log.warning(
                f"integration {name} is pending: the vendor sent a confirmation link. Request it "
                f"to activate the integration: `siemgate confirm -c CONFIG {name}`, or open {link}",
                extra={"integration": name, "link": link},
            )

    async def _auto_confirm_pending(self) -> None:
        """Request the integration's pending link, then the newer one that arrived meanwhile, if
        any: one request at a time per integration, however many links arrive."""
        last: str | None = None
        while True:
            entry = self.context.store.entry(self.integration.name)
            if entry is None or entry.state != "pending" or entry.url == last:
                return
            # The config as it is now: a reload may have changed allowed_hosts or the mode.
            current = next((i for i in self.context.config.integrations if i.name == self.integration.name), None)
            if current is None or current.confirmation.mode != "auto":
                return
            last = entry.url
            await self._auto_confirm(last, current)

    async def _auto_confirm(self, link: str, integration: IntegrationConfig) -> None:
        name = integration.name
        try:
            result = await request_link(link, integration.confirmation)
        except ConfirmationRefused as exc:
            reason = exc.reason
        except Exception as exc:  # noqa: BLE001 - a background task: recorded, never left unobserved
            reason = f"unexpected {type(exc).__name__}: {exc}"
        else:
            log.info("integration confirmed", extra={"integration": name, "status": result.status})
            await self._record(self.context.store.mark_confirmed(name, link, "auto"))
            self.context.metrics.set_integration_state(name, self.context.store.state(name))
            return
        log.error(
            f"could not confirm integration {name} automatically: {reason}. Fix "
            f"confirmation.allowed_hosts or run `siemgate confirm -c CONFIG {name}`",
            extra={"integration": name, "link": link},
        )
        await self._record(self.context.store.record_failure(name, link, reason))

    async def _record(self, write: Coroutine[object, object, bool]) -> None:
        """A state write from a background task: its failure is logged, not left unobserved."""
        try:
            await write
        except (OSError, SiemgateError) as exc:
            log.error(f"could not save the confirmation state: {exc}. Fix state_dir",
                      extra={"integration": self.integration.name})


def _charset(content_type: str | None) -> str | None:
    """The `charset` parameter of a Content-Type, if any (read only for a body that is not UTF-8)."""
    if not content_type or "charset" not in content_type.lower():
        return None
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').strip() or None
    return None


def _slash_twin(path: str) -> str:
    """`path` with its trailing slash removed, or one added."""
    return path[:-1] if path.endswith("/") else path + "/"


def _content_length(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


class Webhooks:
    """The integrations' routes. `apply_config` (hot reload) swaps them atomically: requests
    in flight keep the endpoint, hence the integration config, they started with; an
    unchanged integration keeps its endpoint."""

    def __init__(self, app: Starlette, context: IngestContext, fixed: list[Route]) -> None:
        self._app = app
        self._context = context
        self._fixed = fixed
        self._endpoints: dict[IntegrationConfig, WebhookEndpoint] = {}
        self._normalize = context.config.normalize
        app.router.routes = self._routes(context.config)

    def _routes(self, config: Config) -> list[BaseRoute]:
        if config.normalize != self._normalize:  # other severity schemes: every endpoint anew
            self._endpoints = {}
            self._normalize = config.normalize
        normalize = config.normalize
        endpoints = {i: self._endpoints.get(i) or WebhookEndpoint(i, self._context, normalize.scheme_for(i.name))
                     for i in config.integrations}
        self._endpoints = endpoints
        webhooks: list[BaseRoute] = [Route(i.path, e.handle, methods=["POST"]) for i, e in endpoints.items()]
        # Each path with its trailing slash added or removed is the same webhook (unless another
        # integration's path: the exact routes come first). Starlette would answer it with a
        # redirect (307, `redirect_slashes`, off) that most senders do not follow, and that
        # points to plain http behind a TLS proxy (the key resent in clear).
        aliases: list[BaseRoute] = [Route(_slash_twin(i.path), e.handle, methods=["POST"])
                                    for i, e in endpoints.items() if i.path != "/"]
        return [*webhooks, *self._fixed, *aliases]

    async def apply_config(self, config: Config) -> None:
        context = self._context
        routes = self._routes(config)
        context.config = config
        self._app.router.routes = routes
        if not context.budget.raise_limit(config.limits.memory_budget_bytes):
            log.warning("limits.memory_budget_bytes is smaller in the reloaded config: it takes effect at a restart "
                        f"(the budget stays {context.budget.limit} bytes until then)")
        for integration in config.integrations:
            context.metrics.set_integration_state(integration.name, context.store.state(integration.name))
        context.metrics.activity.retain(i.name for i in config.integrations)
        log.info("ingest config applied", extra={"integrations": [i.name for i in config.integrations]})


def create_app(config: Config, publisher: Publisher, *, foreground: Foreground | None = None,
               health: Callable[[], Sequence[Mapping[str, object]]] | None = None) -> Starlette:
    """The ingest app. `publisher` is started and stopped by the app's lifespan. The app's
    `state.webhooks` applies a reloaded config (`siemgate.reload`). `foreground`: shared with
    forwarders on the same event loop (`siemgate run`), which then let requests go first.
    `health`: what else in the process is stalled (`siemgate run`: its forwarders); /healthz
    fails while it or the publisher (the spool drainer, `StallReporter`) lists anything."""
    context = IngestContext(config=config, publisher=publisher, prefix=config.bus.topic_prefix,
                            foreground=foreground)
    if isinstance(publisher, SpoolReporter):
        context.metrics.watch_spool(publisher.spool_stats)
    if isinstance(publisher, DrainingPublisher):
        context.metrics.watch_shutdown_drains(publisher.shutdown_drains)
    if isinstance(publisher, StorageReporter):
        context.metrics.watch_storage(publisher.storage_stats)
    if isinstance(publisher, StallReporter):
        context.metrics.watch_stalls(publisher.stalled)

    async def healthz(request: Request) -> Response:
        stalled: list[Mapping[str, object]] = list(publisher.stalls()) if isinstance(publisher, StallReporter) else []
        stalled += health() if health is not None else []
        if stalled:
            return JSONResponse({"status": "stalled", "stalled": stalled}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if context.stopping:
            return JSONResponse({"status": "not ready", "reason": "stopping: answering the requests in flight, "
                                 "then sending the spool to Kafka before exit"}, status_code=503)
        if await context.publisher.ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready",
                             "reason": "the event bus does not accept writes (nor does the spool, if any)"},
                            status_code=503)

    async def metrics(request: Request) -> Response:
        # `siemgate confirm` (another process) may have changed an integration's state.
        with contextlib.suppress(OSError, SiemgateError):
            await context.store.load()
        for integration in context.config.integrations:
            context.metrics.set_integration_state(integration.name, context.store.state(integration.name))
        return Response(generate_latest(context.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await context.store.load()
        for integration in context.config.integrations:
            context.metrics.set_integration_state(integration.name, context.store.state(integration.name))
        await context.publisher.start()
        log.info("ingest started", extra={"integrations": [i.name for i in context.config.integrations]})
        try:
            yield
        finally:
            for task in list(context.background):
                task.cancel()
            await asyncio.gather(*context.background, return_exceptions=True)
            await context.publisher.stop()
            log.info("ingest stopped")

    fixed = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    metrics_route = Route("/metrics", metrics, methods=["GET"])
    if config.metrics is None:  # else only on the metrics listener (the composition root serves it)
        fixed.append(metrics_route)
    app = Starlette(lifespan=lifespan)
    app.router.redirect_slashes = False  # the webhooks take both spellings (`Webhooks._routes`)
    app.state.context = context
    app.state.metrics_route = metrics_route
    app.state.webhooks = Webhooks(app, context, fixed)
    return app
