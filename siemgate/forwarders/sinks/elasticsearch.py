"""The Elasticsearch sink (`type: elasticsearch`).

Events become ECS alert documents (`siemgate.forwarders.formats.ecs`) written with the
`_bulk` API: `POST /<target>/_bulk` with one `create` action per event and `_id` = the
event's id (its SHA-256 when the id is longer than the 512 bytes Elasticsearch takes as an
`_id`; `event.id` keeps it whole), into a data stream (default `logs-siemgate.alerts-default`, which the built-in
`logs-*-*` template of Elasticsearch already accepts; `siemgate es-setup` installs ECS
mappings for it) or an index. Because the action is `create` with a deterministic `_id`, a
redelivered event cannot become a second document: Elasticsearch answers 409 and the event
counts as a duplicate, delivered.

Requests are NDJSON, gzip'd, at most `batch.max_bytes` (before gzip) each, with
`filter_path` so that an answer carries only the per-item status and error. Auth: `api_key`
(the `encoded` value of the Create API key answer, or `id:api_key`) or `username` +
`password`.

What each answer does (docs/PROTOCOLS.md 2.2-2.6):

- Per item: 2xx delivered; 409 a duplicate (delivered, counted apart); 429, 5xx and 403
  cluster blocks sent again alone, with backoff; `Duplicate field` (the vendor's text names a
  key twice in an object, which Elasticsearch refuses and JSON parsers read as its last value)
  sent again at once with the vendor's event written from its parsed form; any other 4xx
  (mapping errors, ...) to the dead-letter topic with Elasticsearch's error type (the DLQ
  metric's `reason` label, e.g. `document_parsing_exception`), reason and cause.
- Whole request: 413 splits the request in halves (a document too large on its own is
  dead-lettered); 429/5xx, answers that are not a bulk answer, timeouts and connection
  errors are retried (what the batch already got confirmed stays delivered); 401/403 are
  `SinkAuthError` and 404 (no such target with `require_alias`, a wrong URL path)
  `SinkRefusedError`: the runtime pauses the sink, alerts and retries; nothing is dropped.
  A whole-request 400 is narrowed down like an item error.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

import httpx
import orjson

from siemgate.errors import ConfigError, SinkAuthError, SinkBusy, SinkError, SinkRefusedError
from siemgate.forwarders.formats.ecs import (
    ECS_TOP_LEVEL,
    data_stream_parts,
    ecs_document,
    fit_flattened,
    flattened_fits,
    put_path,
)
from siemgate.forwarders.normalize import NormalizedEvent
from siemgate.forwarders.sinks.base import SendResult, Sink, SinkSettings, TlsSettings
from siemgate.forwarders.sinks.http import (
    DEFAULT_PORTS,
    HttpBatchSettings,
    HttpEndpoint,
    check_url,
    send_in_requests,
    short_body,
)
from siemgate.record import dumps
from siemgate.secrets import Secret

log = logging.getLogger("siemgate.forward.elasticsearch")

# Where this sink connects, for the Helm chart's NetworkPolicy (`make helm-schema` reads it): the
# settings key holding its destination URL, and each URL scheme's port when the URL gives none.
DESTINATION_KEY: Final = "url"

DEFAULT_DATA_STREAM: Final = "logs-siemgate.alerts-default"
# The longest `_id` Elasticsearch takes, in UTF-8 bytes ("id [...] is too long, must be no
# longer than 512 bytes").
MAX_ID_BYTES: Final = 512
_BLOCKED: Final = "cluster_block_exception"
FILTER_PATH: Final = ("errors,items.*.status,items.*.error.type,items.*.error.reason,items.*.error.caused_by.type,"
                      "items.*.error.caused_by.reason")
# In a refusal's reason (or its cause's: Elasticsearch 7 says only "failed to parse" above it):
# a key twice in an object of the document's text (Jackson's STRICT_DUPLICATE_DETECTION).
_DUPLICATE_FIELD: Final = "Duplicate field '"


@dataclass(frozen=True, kw_only=True)
class ObserverSettings:
    """ECS `observer.*`: the product that saw the attack (e.g. vendor Acme, product WAF, type waf)."""

    vendor: str | None = None
    product: str | None = None
    type: str | None = None
    name: str | None = None


@dataclass(frozen=True, kw_only=True)
class ElasticsearchSinkSettings(SinkSettings):
    type: ClassVar[str] = "elasticsearch"
    url: str
    api_key: Secret | None = None
    username: str | None = None
    password: Secret | None = None
    # Exactly one target: a data stream (default) or an index.
    data_stream: str | None = None
    index: str | None = None
    pipeline: str | None = None
    # Where the vendor's event goes, as an object ("" leaves it out); event.original would keep
    # it a second time, as JSON text (not indexed): off by default, it doubles every document.
    original_field: str = "siemgate.event"
    event_original: bool = False
    observer: ObserverSettings = field(default_factory=ObserverSettings)
    gzip: bool = True
    timeout_seconds: float = 30.0
    tls: TlsSettings = field(default_factory=TlsSettings)
    batch: HttpBatchSettings = field(default_factory=HttpBatchSettings)

    def __post_init__(self) -> None:
        check_url(self.url)
        if self.data_stream and self.index:
            raise ConfigError("index", "set either data_stream or index, not both")
        target = self.target
        if target != target.lower() or target.startswith(("-", "_", "+")) or any(c in target for c in ' "*\\<|,>/?#:'):
            raise ConfigError("data_stream" if self.data_stream else "index",
                              f"{target!r} is not a valid Elasticsearch name (lowercase, no spaces or \\/*?\"<>|,#:)")
        if self.api_key is not None and self.username is not None:
            raise ConfigError("api_key", "set either api_key or username/password, not both")
        if (self.username is None) != (self.password is None):
            raise ConfigError("password", "username and password go together")
        if self.timeout_seconds <= 0:
            raise ConfigError("timeout_seconds", "must be > 0")
        if self.original_field and self.original_field.split(".")[0] in ECS_TOP_LEVEL:
            raise ConfigError("original_field", f"{self.original_field!r} is under ECS's "
                              f"{self.original_field.split('.')[0]!r}: the vendor's event goes outside ECS "
                              "(default siemgate.event), or its fields would mix with ECS's")

    @property
    def target(self) -> str:
        return self.data_stream or self.index or DEFAULT_DATA_STREAM

    @property
    def data_stream_parts(self) -> tuple[str, str, str] | None:
        """The target data stream's (type, dataset, namespace) when its name follows Elastic's
        naming scheme; None for an index."""
        return None if self.index else data_stream_parts(self.target)

    @property
    def original_path(self) -> tuple[str, ...] | None:
        return tuple(self.original_field.split(".")) if self.original_field else None


def authorization(settings: ElasticsearchSinkSettings) -> str | None:
    if settings.api_key is not None:
        key = settings.api_key.reveal()
        if ":" in key:  # id:api_key, not yet encoded
            key = base64.b64encode(key.encode()).decode()
        return f"ApiKey {key}"
    if settings.username is not None and settings.password is not None:
        pair = f"{settings.username}:{settings.password.reveal()}".encode()
        return f"Basic {base64.b64encode(pair).decode()}"
    return None


def endpoint_for(settings: ElasticsearchSinkSettings) -> HttpEndpoint:
    headers = {"Content-Type": "application/x-ndjson", "Accept": "application/json", "User-Agent": "siemgate"}
    auth = authorization(settings)
    if auth is not None:
        headers["Authorization"] = auth
    return HttpEndpoint(name=settings.name, url=check_url(settings.url), tls=settings.tls,
                        timeout_seconds=settings.timeout_seconds, headers=headers, gzip=settings.gzip)


def auth_error(url: str, status: int, body: str, name: str) -> SinkAuthError:
    if status == 401:
        return SinkAuthError(f"{url}: Elasticsearch refused our credentials (401 {body}): fix sinks[{name}].api_key "
                             "or username/password")
    return SinkAuthError(f"{url}: Elasticsearch says our credentials may not do this (403 {body}): they need the "
                         "create_doc privilege on the target")


@dataclass
class _Progress:
    delivered: set[int] = field(default_factory=set)
    duplicates: set[int] = field(default_factory=set)
    retry: set[int] = field(default_factory=set)
    rejected: dict[int, str] = field(default_factory=dict)

    def settled(self) -> set[int]:
        return self.delivered | self.duplicates | self.retry | self.rejected.keys()


def document_id(event_id: str) -> str:
    """The `_id` of an event's document: its id, or, for an id longer than Elasticsearch's
    512 bytes (which it refuses: the event was dead-lettered), the id's SHA-256 in hex, as
    deterministic, so a redelivered event is still a 409."""
    if len(event_id) <= MAX_ID_BYTES // 4 or len(event_id.encode("utf-8", "surrogatepass")) <= MAX_ID_BYTES:
        return event_id
    return hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()


class ElasticsearchSink(Sink[ElasticsearchSinkSettings]):
    def __init__(self, settings: ElasticsearchSinkSettings) -> None:
        super().__init__(settings)
        self._endpoint = endpoint_for(settings)
        self._path = f"/{settings.target}/_bulk"
        self._params = {"filter_path": FILTER_PATH}
        if settings.pipeline:
            self._params["pipeline"] = settings.pipeline
        observer = {k: v for k, v in vars(settings.observer).items() if v}
        self._observer = observer or None
        self._original = settings.original_path
        self._data_stream = settings.data_stream_parts

    def document(self, event: NormalizedEvent, ingested: str) -> dict[str, Any]:
        return ecs_document(event, ingested=ingested, original_field=self._original,
                            event_original=self.settings.event_original, observer=self._observer,
                            data_stream=self._data_stream)

    def encode(self, event: NormalizedEvent, ingested: str, *, parsed: bool = False) -> bytes:
        """The `create` action and the document, with the vendor's event under
        `original_field` as the ingest received it (a pre-serialized fragment: no second
        encoding, its exact numbers) when it certainly fits the `flattened` mapping, else (and
        with `parsed`) as `fit_flattened` makes it fit, written from its parsed form."""
        action = b'{"create":{"_id":' + orjson.dumps(document_id(event.id)) + b"}}\n"
        doc = ecs_document(event, ingested=ingested, original_field=None,
                           event_original=self.settings.event_original, observer=self._observer,
                           data_stream=self._data_stream)
        if self._original is not None:
            raw = event.event_bytes()
            put_path(doc, self._original, orjson.Fragment(raw) if not parsed and flattened_fits(raw)
                     else fit_flattened(event.event))
        return action + dumps(doc) + b"\n"

    async def send(self, events: Sequence[NormalizedEvent]) -> SendResult:
        ingested = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        lines = [self.encode(e, ingested) for e in events]
        progress = _Progress()
        error = await send_in_requests(lines, self.settings.batch.max_bytes,
                                       lambda chunk: self._bulk(lines, chunk, progress))
        if error is None and progress.rejected:
            error = await self._again_from_parsed(events, lines, ingested, progress)
        settled = progress.settled()
        unsent = [i for i in range(len(lines)) if i not in settled]
        if error is not None and len(unsent) == len(lines):
            raise error
        if error is not None:
            log.warning("Elasticsearch took part of the batch; the rest is sent again",
                        extra={"sink": self.name, "retry": len(unsent), "error": str(error)})
        return SendResult(retry=sorted(progress.retry.union(unsent)), rejected=sorted(progress.rejected.items()),
                          duplicates=sorted(progress.duplicates))

    async def _again_from_parsed(self, events: Sequence[NormalizedEvent], lines: list[bytes], ingested: str,
                                 progress: _Progress) -> SinkError | None:
        """Send once more, the vendor's event written from its parsed form, the documents
        Elasticsearch refused for a key the vendor's text names twice in an object
        (`Duplicate field`: JSON parsers keep the last value, Elasticsearch refuses the text).
        Telling them apart before sending costs a second encoding of every event; they are
        rare. A document refused again is dead-lettered with that answer."""
        again = []
        for index, reason in progress.rejected.items():
            if _DUPLICATE_FIELD in reason:
                line = self.encode(events[index], ingested, parsed=True)
                if line != lines[index]:
                    lines[index] = line
                    again.append(index)
        if not again:
            return None
        for index in again:
            del progress.rejected[index]
        log.info("Elasticsearch refused the vendor's text of events naming a key twice: sent again, each key "
                 "once (its last value)", extra={"sink": self.name, "count": len(again)})
        return await send_in_requests([lines[i] for i in again], self.settings.batch.max_bytes,
                                      lambda chunk: self._bulk(lines, [again[j] for j in chunk], progress))

    async def _bulk(self, lines: Sequence[bytes], chunk: list[int], progress: _Progress) -> None:
        if not chunk:
            return
        response = await self._endpoint.request("POST", self._path, b"".join(lines[i] for i in chunk),
                                                params=self._params)
        status = response.status_code
        if status == 200:
            self._items(response, chunk, progress)
            return
        if status == 413 or status == 400:
            if len(chunk) == 1:
                progress.rejected[chunk[0]] = (
                    "request_entity_too_large: Elasticsearch answered 413: the document alone is larger than "
                    "http.max_content_length" if status == 413
                    else f"bad_request: Elasticsearch answered 400 to the request: {_error_text(response)}")
                return
            half = len(chunk) // 2
            await self._bulk(lines, chunk[:half], progress)
            await self._bulk(lines, chunk[half:], progress)
            return
        if status in (401, 403):
            raise auth_error(self._endpoint.url, status, _error_text(response), self.name)
        if status == 404:
            raise SinkRefusedError(f"{self._endpoint.url}{self._path}: Elasticsearch answered 404 "
                                   f"({_error_text(response)}): check sinks[{self.name}].url and its target")
        raise SinkBusy(f"{self._endpoint.url}: HTTP {status}: {_error_text(response)}")

    def _items(self, response: httpx.Response, chunk: list[int], progress: _Progress) -> None:
        try:
            answer = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise SinkBusy(f"{self._endpoint.url}: the bulk answer is not JSON: {short_body(response)}") from None
        if isinstance(answer, dict) and answer.get("errors") is False:
            progress.delivered.update(chunk)
            return
        items = answer.get("items") if isinstance(answer, dict) else None
        if not isinstance(items, list) or len(items) != len(chunk):
            raise SinkBusy(f"{self._endpoint.url}: the bulk answer does not list one item per document: "
                        f"{short_body(response)}")
        for index, item in zip(chunk, items, strict=True):
            outcome: dict[str, Any] = {}
            if isinstance(item, dict) and item and isinstance(first := next(iter(item.values())), dict):
                outcome = first
            status = outcome.get("status")
            if not isinstance(status, int):
                progress.retry.add(index)
            elif 200 <= status < 300:
                progress.delivered.add(index)
            elif status == 409:
                progress.duplicates.add(index)
            elif status == 429 or status >= 500 or (status == 403 and _error_type(outcome) == _BLOCKED):
                progress.retry.add(index)
            else:
                error = outcome.get("error")
                error = error if isinstance(error, dict) else {}
                cause = error.get("caused_by")
                cause = (f" (caused by {cause.get('type') or 'error'}: {cause.get('reason')})"
                         if isinstance(cause, dict) and cause.get("reason") else "")
                progress.rejected[index] = (f"{error.get('type') or 'error'}: Elasticsearch answered {status}: "
                                            f"{error.get('reason') or '(no reason given)'}{cause}")

    async def healthcheck(self) -> str:
        response = await self._endpoint.request("GET", "/")
        if response.status_code in (401, 403):
            raise auth_error(self._endpoint.url, response.status_code, _error_text(response), self.name)
        if response.status_code != 200:
            raise SinkError(f"{self._endpoint.url}: HTTP {response.status_code}: {_error_text(response)}")
        try:
            info = orjson.loads(response.content)
            version = info["version"]["number"]
            cluster = info.get("cluster_name", "?")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise SinkError(
                f"{self._endpoint.url} does not answer like Elasticsearch: {short_body(response)}") from None
        return f"Elasticsearch {version} (cluster {cluster}), writing to {self.settings.target}"

    async def close(self) -> None:
        await self._endpoint.close()


def _error_type(outcome: dict[str, Any]) -> str | None:
    error = outcome.get("error")
    return error.get("type") if isinstance(error, dict) else None


def _error_text(response: httpx.Response) -> str:
    try:
        answer = orjson.loads(response.content)
        error = answer["error"]
        return f"{error['type']}: {error['reason']}" if isinstance(error, dict) else str(error)
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return short_body(response) or "(no body)"


__all__: Sequence[str] = (
    "DEFAULT_DATA_STREAM", "DEFAULT_PORTS", "DESTINATION_KEY",
    "ElasticsearchSink", "ElasticsearchSinkSettings", "endpoint_for",
)
