"""The Splunk HTTP Event Collector sink (`type: splunk_hec`).

Each event becomes one HEC envelope; a batch goes out as concatenated envelopes in as few
`POST /services/collector/event` requests as `batch.max_bytes` allows, gzip'd, with
`Authorization: Splunk <token>` and this worker's channel (a GUID) on every request.

    {"time": 1764370800.123, "host": "shop-frontend", "source": "appsec-prod",
     "sourcetype": "siemgate:event", "index": "appsec",
     "event": {"timestamp": "2025-11-28T23:00:00.123000Z", "severity": "high", "severity_id": 4,
               "signature": "SQL injection", "src": "203.0.113.9", "src_ip": "203.0.113.9",
               "dest": "shop-frontend", "dvc": "shop-frontend", "action": "blocked", "vendor_action": "deny",
               "url": "/login", "http_method": "POST", "vendor_product": "appsec-prod",
               "ids_type": "application", "type": "alert", "id": "...", "integration": "appsec-prod",
               "kind": "event", "received_at": "...", "vendor_event": {...the vendor's event, untouched...}},
     "fields": {"integration": "appsec-prod", "severity": "high"}}

`time` is the event's own timestamp in epoch seconds (sub-second precision); the receive time
when the event has none or one that is no real instant (then `fields.timestamp_invalid` and the
CIM event's `timestamp_invalid` hold the vendor's text). `host` the configured one or the
event's asset made safe (`splunk_host`: no control characters, at most 255 characters; left
out, so the token's default host applies, when nothing is left), `source` the configured one
or the integration's name.

`event_format: cim` (default) shapes `event` for the CIM Intrusion Detection and Alerts data
models, so that the add-on in deploy/splunk/ (TA-siemgate) only tags it: `timestamp` first
(the instant `time` holds, RFC 3339: the add-on's props.conf reads it when Splunk extracts
timestamps itself), `severity` the level (critical/high/medium/low/unknown) and `severity_id`
5/4/3/2/0 on the OCSF scale Splunk's add-ons use, `signature` (the rule, else the category),
`src`, `src_ip` (only an IP address, without an IPv6 zone), `dest` (the asset), `dvc` (the
envelope's host), `action` one of CIM's `blocked`/`allowed` (`cim_action`; left out for a word
that says neither, a boolean among them) with the vendor's word in `vendor_action`,
`vendor_product` (`vendor_product`, else the integration's name), `ids_type` (`ids_type`,
default application: a WAF or AppSec product), `type` (alert; event for siemgate's test and
confirmation messages). `event_format: original` sends the vendor's event as it came;
`event_format: ocsf` sends an OCSF record (`formats/ocsf.py`, shaped by `ocsf:`; for
Splunk's OCSF-CIM add-on), the vendor's event under its `unmapped`.

What each answer does (docs/PROTOCOLS.md 1.5, 1.7, 1.8):

- 200, code 0 (or the 24/25 "approaching capacity" warnings): accepted. With `ack: true`
  the answer's `ackId` is polled on `/services/collector/ack` (first after 10 ms, then
  doubling up to `ack_poll_seconds`) and the events count as delivered only once it comes
  back true; after `ack_timeout_seconds` without it, they are sent again (at least once).
- 400 with `invalid-event-number` (code 6 "invalid data", or 12, 13, 15): that event goes to
  the dead-letter topic with HEC's reason, the events after it are sent again, and those
  before it count as delivered (Splunk indexed them) — or, with `ack: true`, are sent again
  too, since no ackId covers them. Codes 5, 6, 12, 13, 15 without the number: the request
  is split in halves until the refused event is alone, so one bad event never holds back
  the others.
- 413: the request is split in halves; an event too large on its own is dead-lettered.
- 401/403 and codes 1-4 (token): `SinkAuthError`; codes 7 (index), 10, 11, 14, 16:
  `SinkRefusedError`. The runtime pauses the sink, alerts and retries; nothing is dropped.
- 429, 5xx (codes 8, 9, 23, 26, 27), answers without JSON, timeouts, connection errors:
  retryable. What this batch already got confirmed stays delivered; the rest is retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, ClassVar, Final, Literal

import httpx
import orjson

from siemgate.errors import (
    ConfigError,
    RetryableSinkError,
    SinkAuthError,
    SinkBusy,
    SinkError,
    SinkRefusedError,
)
from siemgate.forwarders.formats.addresses import ip_text
from siemgate.forwarders.formats.ocsf import OcsfSettings, ocsf_event
from siemgate.forwarders.normalize import NormalizedEvent
from siemgate.forwarders.sinks.base import SendResult, Sink, SinkSettings, TlsSettings
from siemgate.forwarders.sinks.http import (
    DEFAULT_PORTS,
    HttpBatchSettings,
    HttpEndpoint,
    check_url,
    chunks_by_size,
    send_in_requests,
    short_body,
)
from siemgate.forwarders.watchdog import ACK
from siemgate.memo import remember
from siemgate.secrets import Secret

log = logging.getLogger("siemgate.forward.splunk_hec")

# Where this sink connects, for the Helm chart's NetworkPolicy (`make helm-schema` reads it): the
# settings key holding its destination URL, and each URL scheme's port when the URL gives none.
DESTINATION_KEY: Final = "url"

EVENT_PATH: Final = "/services/collector/event"
ACK_PATH: Final = "/services/collector/ack"
HEALTH_PATH: Final = "/services/collector/health"
# OCSF severity_id, as Splunk's OCSF-CIM add-on maps it.
SEVERITY_ID: Final = {"critical": 5, "high": 4, "medium": 3, "low": 2, "unknown": 0}
_SUCCESS_CODES: Final = frozenset({0, 24, 25})
_TOKEN_CODES: Final = frozenset({1, 2, 3, 4})
_BISECT_CODES: Final = frozenset({5, 6, 12, 13, 15})
_FIRST_ACK_POLL: Final = 0.01
# CIM Intrusion Detection `action` by the vendor's action word (lower case, trimmed).
_CIM_ACTION: Final = {
    **dict.fromkeys(("block", "blocked", "deny", "denied", "prevent", "prevented", "drop", "dropped", "reject",
                     "rejected", "quarantine", "quarantined", "reset", "terminate", "terminated", "challenge",
                     "challenged", "captcha", "mitigate", "mitigated"), "blocked"),
    **dict.fromkeys(("allow", "allowed", "pass", "passed", "permit", "permitted", "accept", "accepted", "log",
                     "logged", "detect", "detected", "monitor", "monitored", "alert", "alerted", "audit",
                     "audited", "report", "reported", "simulate", "simulated"), "allowed"),
}
# HEC `host`: the longest kept (a DNS name has at most 253 characters).
MAX_HOST_CHARS: Final = 255
_HOST_SCAN_CHARS: Final = 4 * MAX_HOST_CHARS
_EVENT: Final = object()  # cim_event's default: the decoded vendor event
_REFUSED: Final = {
    7: "the index is not allowed for this token or does not exist: fix sinks[].index or the token's allowed indexes",
    10: "HEC wants a channel (the token has indexer acknowledgement on): this is a siemgate bug, please report it",
    11: "HEC refused our channel: this is a siemgate bug, please report it",
    14: "indexer acknowledgement is disabled on this token: set `ack: false` or enable it on the token",
    16: "HEC refused query-string authorization: this is a siemgate bug, please report it",
}


@dataclass(frozen=True, kw_only=True)
class SplunkHecSinkSettings(SinkSettings):
    type: ClassVar[str] = "splunk_hec"
    # https://splunk:8088 (a path prefix is kept, for a HEC behind a proxy).
    url: str
    token: Secret
    # Omitted: the token's default index.
    index: str | None = None
    sourcetype: str = "siemgate:event"
    # Omitted: the integration's name.
    source: str | None = None
    # Omitted: the event's asset when it has one, else HEC's default for the token.
    host: str | None = None
    event_format: Literal["cim", "original", "ocsf"] = "cim"
    # With event_format cim: CIM `vendor_product` (omitted: the integration's name) and
    # `ids_type` (a WAF or application security product: application).
    vendor_product: str | None = None
    ids_type: Literal["application", "network", "host", "wireless"] = "application"
    # With event_format ocsf: the OCSF class and metadata.product (formats/ocsf.py).
    ocsf: OcsfSettings = field(default_factory=OcsfSettings)
    # Indexer acknowledgement: delivered (and committed) only once HEC says indexed.
    ack: bool = False
    ack_poll_seconds: float = 1.0
    ack_timeout_seconds: float = 300.0
    gzip: bool = True
    timeout_seconds: float = 30.0
    tls: TlsSettings = field(default_factory=TlsSettings)
    batch: HttpBatchSettings = field(default_factory=lambda: HttpBatchSettings(max_bytes=1_000_000))

    def __post_init__(self) -> None:
        check_url(self.url)
        if not self.token:
            raise ConfigError("token", "is empty (check the ${VAR} it uses)")
        if self.host and splunk_host(self.host) != self.host:
            raise ConfigError("host", "must be a host name without control characters or surrounding spaces, "
                                      f"at most {MAX_HOST_CHARS} characters")
        if self.ack_poll_seconds <= 0 or self.ack_timeout_seconds <= 0 or self.timeout_seconds <= 0:
            raise ConfigError("ack_poll_seconds",
                              "ack_poll_seconds, ack_timeout_seconds and timeout_seconds must be > 0")


def epoch_seconds(timestamp: str) -> float | None:
    """RFC 3339 -> epoch seconds with microseconds; None when it does not parse."""
    # The normalizer's own form, 2026-11-28T21:00:00.123456Z (every event's, in practice): its
    # seconds' part and its fraction looked up (`_SECOND_MICROS`, `_FRACTION_MICROS`: the
    # events of a batch mostly share their seconds, and a source's fractions mostly end in 000
    # or 000000), added: the same integer `_parsed_epoch_seconds` sums, so the same float.
    if len(timestamp) == 27:
        tail = timestamp[19:]
        try:
            fraction = _FRACTION_MICROS[tail]
        except KeyError:
            fraction = _fraction_micros(tail)
        if fraction is not None:
            prefix = timestamp[:19]
            try:
                micros = _SECOND_MICROS[prefix]
            except KeyError:
                micros = _second_micros(prefix)
            if micros is not None:
                return (micros + fraction) / 1_000_000
    return _parsed_epoch_seconds(timestamp)


# `_second_micros` of the seconds' parts seen (`YYYY-MM-DDTHH:MM:SS`), `_fraction_micros` of the
# ends (`.123456Z`). The values come from the network: bounded, emptied when full.
_SECOND_MICROS: dict[str, int | None] = {}
_FRACTION_MICROS: dict[str, int | None] = {}


def _fraction_micros(tail: str) -> int | None:
    """The microseconds of a timestamp's last 8 characters when they are `.` + 6 ASCII digits +
    `Z` (else None), remembered in `_FRACTION_MICROS`."""
    digits = tail[1:7]
    micros = (int(digits) if len(tail) == 8 and tail[0] == "." and tail[7] == "Z" and digits.isascii()
              and digits.isdigit() else None)
    return remember(_FRACTION_MICROS, tail, micros)


def _second_micros(prefix: str) -> int | None:
    """The epoch microseconds of a timestamp's first 19 characters when `_parsed_epoch_seconds`
    reads a timestamp of them + `.` + 6 ASCII digits + `Z` by its 6-digit path (else None),
    remembered in `_SECOND_MICROS`."""
    micros = None
    if prefix[10] == "T" and prefix[13] == ":" and prefix.isascii():
        minute = _minute_start(prefix[:16])
        seconds_text = prefix[17:19]
        if minute is not None and seconds_text.isdigit() and seconds_text <= "60":
            micros = minute * 1_000_000 + int(seconds_text) * 1_000_000
    return remember(_SECOND_MICROS, prefix, micros)


def _parsed_epoch_seconds(timestamp: str) -> float | None:
    """`epoch_seconds` of any text (what its lookup agrees with)."""
    # The normalizer's own form, 2026-11-28T21:00:00.123456Z: the minute's start is remembered
    # (the events of a batch mostly share it), the seconds added to it: the same sum as
    # day + hours + minutes + seconds, so the same float.
    if len(timestamp) >= 20 and timestamp[10] == "T" and timestamp[-1] == "Z" and timestamp[13] == ":":
        minute = _minute_start(timestamp[:16])
        if minute is not None:
            seconds_text = timestamp[17:19]
            if (len(timestamp) == 27 and timestamp[19] == "." and timestamp.isascii() and seconds_text.isdigit()
                    and seconds_text <= "60" and timestamp[20:26].isdigit()):
                # Exactly 6 fraction digits: whole microseconds over 10**6, one correctly rounded
                # division: the float round(minute + seconds, 6) gives, without its decimal
                # conversions (checked against it over 2 million random instants of years 1-9999).
                return (minute * 1_000_000 + int(seconds_text + timestamp[20:26])) / 1_000_000
            try:
                seconds = float(timestamp[17:-1])
                if 0 <= seconds < 61:
                    return round(minute + seconds, 6)
            except ValueError:
                pass
    try:
        return round(datetime.fromisoformat(timestamp).timestamp(), 6)
    except ValueError:
        return None


@lru_cache(maxsize=4096)
def _minute_start(minute: str) -> int | None:
    """`YYYY-MM-DDTHH:MM` (UTC) -> epoch seconds of its start; None when it is not that."""
    day = _day_start(minute[:10])
    if day is None:
        return None
    try:
        hours, minutes = int(minute[11:13]), int(minute[14:16])
    except ValueError:
        return None
    if hours < 24 and minutes < 60:
        return int(day) + hours * 3600 + minutes * 60
    return None


@lru_cache(maxsize=1024)
def _day_start(day: str) -> float | None:
    try:
        return datetime.fromisoformat(day + "T00:00:00+00:00").timestamp()
    except ValueError:
        return None


def cim_action(action: str | None) -> str | None:
    """CIM's `action` for the vendor's action word: `blocked` or `allowed`, the two values the
    Intrusion Detection model allows (a detection that only logged or alerted let the request
    through: allowed); None for a word that says neither (a boolean `true`, `whatever`) or no
    action. The word itself goes to `vendor_action`."""
    if action is None:
        return None
    return _CIM_ACTION.get(action.strip().lower())


def splunk_host(value: str | None) -> str | None:
    """A value fit for HEC's `host`: without control, format, line or paragraph separator
    characters (newline, NUL, DEL, C1, U+2028 ...), trimmed, at most `MAX_HOST_CHARS`
    characters; None when nothing is left (then HEC uses the token's default host)."""
    if not value:
        return None
    value = value[:_HOST_SCAN_CHARS]  # a huge asset is not scanned whole
    if not value.isprintable():
        value = "".join(c for c in value if c.isprintable())
    value = value.strip()[:MAX_HOST_CHARS].rstrip()
    return value or None


def _ip(value: str | None) -> str | None:
    """`value` as an IP address for CIM's `src_ip` (an IPv6 zone, `%eth0`, left out); None
    when it is no IP address."""
    ip = ip_text(value)
    return None if ip is None else ip.address


# `_ip`'s and `cim_action`'s answers for the source addresses and action words seen (they
# repeat from event to event). The values come from the network: bounded in number (emptied
# when full) and in length (a longer text is looked at each time).
_SRC_IPS: dict[str, str | None] = {}
_ACTIONS: dict[str, str | None] = {}
_LONGEST_REMEMBERED: Final = 100


def _remembered_ip(value: str) -> str | None:
    try:
        return _SRC_IPS[value]
    except KeyError:
        ip = _ip(value)
        return remember(_SRC_IPS, value, ip) if len(value) <= _LONGEST_REMEMBERED else ip


def _remembered_action(action: str) -> str | None:
    try:
        return _ACTIONS[action]
    except KeyError:
        cim = cim_action(action)
        return remember(_ACTIONS, action, cim) if len(action) <= _LONGEST_REMEMBERED else cim


# splunk_host's verdicts on the assets seen (they repeat from event to event); bounded.
_HOSTS: dict[str, str | None] = {}
_MAX_HOSTS: Final = 4096


def _event_host(asset: str | None) -> str | None:
    """`splunk_host(asset)`, remembered."""
    if asset is None:
        return None
    try:
        return _HOSTS[asset]
    except KeyError:
        host = splunk_host(asset)
        if len(_HOSTS) < _MAX_HOSTS and len(asset) <= MAX_HOST_CHARS:
            _HOSTS[asset] = host
        return host


def cim_event(event: NormalizedEvent, *, vendor_event: object = _EVENT, dvc: str | None = None,
              vendor_product: str | None = None, ids_type: str = "application") -> dict[str, Any]:
    """`event` in CIM shape (Intrusion Detection and Alerts); the vendor's event under
    `vendor_event` (default: as decoded). `dvc`: the reporting device (the envelope's host);
    `vendor_product`: default the integration's name."""
    return _cim(event, event.event if vendor_event is _EVENT else vendor_event, dvc, vendor_product, ids_type)


def _cim(event: NormalizedEvent, vendor_event: object, dvc: str | None, vendor_product: str | None,
         ids_type: str) -> dict[str, Any]:
    """`cim_event`, its arguments by position (`SplunkHecSink.encode` calls it for every event)."""
    # `timestamp` first: the add-on's props.conf TIME_PREFIX finds it at the start of _raw.
    # Keys in this order, each left out when it has no value (a CIM field per statement: this
    # runs for every event).
    level = event.level
    body: dict[str, Any] = {"timestamp": event.timestamp, "severity": level, "severity_id": SEVERITY_ID[level]}
    rule = event.rule
    event_type = event.event_type
    signature = rule if rule is not None else event_type
    if signature is not None:
        body["signature"] = signature
    value = event.rule_id
    if value is not None:
        body["signature_id"] = value
    value = event.source_ip
    if value is not None:
        body["src"] = value
        src_ip = _remembered_ip(value)
        if src_ip is not None:
            body["src_ip"] = src_ip
    value = event.asset
    if value is not None:
        body["dest"] = value
    if dvc is not None:
        body["dvc"] = dvc
    value = event.action
    if value is not None:
        cim = _remembered_action(value)
        if cim is not None:
            body["action"] = cim
        body["vendor_action"] = value
    value = event.url
    if value is not None:
        body["url"] = value
    value = event.method
    if value is not None:
        body["http_method"] = value
    if event_type is not None:
        body["category"] = event_type
    value = event.message
    if value is not None:
        body["description"] = value
    integration = event.integration
    kind = event.kind
    body["vendor_product"] = vendor_product or integration
    body["ids_type"] = ids_type
    # CIM Alerts `type`: a detection is an alert; siemgate's test and confirmation messages are events.
    body["type"] = "alert" if kind == "event" else "event"
    body["id"] = event.id
    body["integration"] = integration
    body["kind"] = kind
    body["received_at"] = event.received_at
    value = event.timestamp_invalid
    if value is not None:
        body["timestamp_invalid"] = value
    body["vendor_event"] = vendor_event
    return body


@dataclass
class _Progress:
    """Where each event of one `send` stands, by index into the batch."""

    delivered: set[int] = field(default_factory=set)
    rejected: dict[int, str] = field(default_factory=dict)
    # ackId -> the events that request carried
    awaiting_ack: dict[int, list[int]] = field(default_factory=dict)
    resend: set[int] = field(default_factory=set)


class SplunkHecSink(Sink[SplunkHecSinkSettings]):
    def __init__(self, settings: SplunkHecSinkSettings) -> None:
        super().__init__(settings)
        self.channel = str(uuid.uuid4())
        base, marker, rest = check_url(settings.url).partition("/services/collector")
        self._event_url_path = marker + rest if marker else EVENT_PATH
        self._endpoint = HttpEndpoint(
            name=settings.name, url=base, tls=settings.tls, timeout_seconds=settings.timeout_seconds,
            gzip=settings.gzip,
            headers={"Authorization": f"Splunk {settings.token.reveal()}", "X-Splunk-Request-Channel": self.channel,
                     "Content-Type": "application/json", "User-Agent": "siemgate"},
        )
        # What `encode` reads of the settings for every event (they never change: a hot reload
        # makes a new sink).
        self._format = settings.event_format
        self._host = settings.host
        self._source = settings.source
        self._sourcetype = settings.sourcetype
        self._index = settings.index or None
        self._vendor_product = settings.vendor_product
        self._ids_type = settings.ids_type
        self._ocsf = settings.ocsf

    # -- encoding

    def _head(self, event: NormalizedEvent, host: str | None) -> dict[str, Any]:
        """The envelope's metadata; `host`: the configured one, else the event's asset made safe."""
        settings = self.settings
        head: dict[str, Any] = {}
        epoch = epoch_seconds(event.timestamp)
        if epoch is not None:
            head["time"] = epoch
        if host:
            head["host"] = host
        head["source"] = settings.source or event.integration
        head["sourcetype"] = settings.sourcetype
        if settings.index:
            head["index"] = settings.index
        return head

    @staticmethod
    def _fields(event: NormalizedEvent) -> dict[str, str]:
        fields = {"integration": event.integration, "severity": event.level}
        if event.kind != "event":
            fields["kind"] = event.kind
        if event.timestamp_invalid is not None:
            fields["timestamp_invalid"] = event.timestamp_invalid
        return fields

    def _cim_event(self, event: NormalizedEvent, host: str | None, vendor_event: object = _EVENT) -> dict[str, Any]:
        settings = self.settings
        return cim_event(event, vendor_event=vendor_event, dvc=host, vendor_product=settings.vendor_product,
                         ids_type=settings.ids_type)

    def envelope(self, event: NormalizedEvent) -> dict[str, Any]:
        """The HEC envelope as a mapping (what `encode` writes)."""
        event_format = self.settings.event_format
        host = self.settings.host or _event_host(event.asset)
        body = (self._cim_event(event, host) if event_format == "cim" else
                ocsf_event(event, self.settings.ocsf) if event_format == "ocsf" else event.event)
        return {**self._head(event, host), "event": body, "fields": self._fields(event)}

    def encode(self, event: NormalizedEvent) -> bytes:
        """The envelope as JSON, with the vendor's event as the ingest received it (a
        pre-serialized fragment: no second encoding, its exact numbers): what `envelope` holds,
        in its order (`_head`, the event, `_fields`), built in one go (this runs for every event)."""
        raw = orjson.Fragment(event.event_bytes())
        host = self._host or _event_host(event.asset)
        epoch = epoch_seconds(event.timestamp)
        envelope: dict[str, Any] = {} if epoch is None else {"time": epoch}
        if host:
            envelope["host"] = host
        integration = event.integration
        envelope["source"] = self._source or integration
        envelope["sourcetype"] = self._sourcetype
        if self._index is not None:
            envelope["index"] = self._index
        event_format = self._format
        envelope["event"] = (_cim(event, raw, host, self._vendor_product, self._ids_type) if event_format == "cim"
                             else ocsf_event(event, self._ocsf, vendor_event=raw) if event_format == "ocsf" else raw)
        fields = {"integration": integration, "severity": event.level}
        kind = event.kind
        if kind != "event":
            fields["kind"] = kind
        invalid = event.timestamp_invalid
        if invalid is not None:
            fields["timestamp_invalid"] = invalid
        envelope["fields"] = fields
        return orjson.dumps(envelope, option=orjson.OPT_APPEND_NEWLINE)

    def payloads(self, events: Sequence[NormalizedEvent]) -> list[bytes]:
        """Each event's envelope (`encode`), in order: what the requests concatenate."""
        return [self.encode(e) for e in events]

    def bodies(self, events: Sequence[NormalizedEvent]) -> list[bytes]:
        """The request bodies of a batch, before gzip, as `send` cuts them when all goes well
        (bench/forward_cpu.py measures this)."""
        payloads = self.payloads(events)
        return [b"".join(payloads[i] for i in chunk)
                for chunk in chunks_by_size([len(p) for p in payloads], self.settings.batch.max_bytes)]

    # -- sending

    async def send(self, events: Sequence[NormalizedEvent]) -> SendResult:
        payloads = self.payloads(events)
        progress = _Progress()
        pending = list(range(len(payloads)))
        error = await send_in_requests(payloads, self.settings.batch.max_bytes,
                                       lambda chunk: self._post(payloads, chunk, progress))
        if progress.awaiting_ack:
            await self._await_acks(progress)
        settled = progress.delivered | progress.rejected.keys()
        retry = [i for i in pending if i not in settled]
        if error is not None and not settled:
            raise error
        if error is not None:
            log.warning("HEC took part of the batch; the rest is sent again",
                        extra={"sink": self.name, "delivered": len(progress.delivered), "retry": len(retry),
                               "error": str(error)})
        return SendResult(retry=retry, rejected=sorted(progress.rejected.items()))

    async def _post(self, payloads: Sequence[bytes], chunk: list[int], progress: _Progress) -> None:
        """Send these events in one request; split, dead-letter or resend per HEC's answer."""
        if not chunk:
            return
        response = await self._endpoint.request("POST", self._event_url_path, b"".join(payloads[i] for i in chunk))
        status, answer = response.status_code, _json(response)
        code = answer.get("code") if isinstance(answer.get("code"), int) else None
        if status == 200 and (code is None or code in _SUCCESS_CODES):
            self._accepted(chunk, answer, progress)
            return
        text = str(answer.get("text") or short_body(response))
        if status == 413 or (status == 400 and code in _BISECT_CODES):
            await self._narrow(payloads, chunk, progress, status, code, text, answer)
            return
        if status in (401, 403) or code in _TOKEN_CODES:
            raise SinkAuthError(f"{self._endpoint.url}: HEC refused the token (HTTP {status}, code {code}: {text}): "
                                f"fix sinks[{self.name}].token")
        if code in _REFUSED:
            raise SinkRefusedError(f"{self._endpoint.url}: HEC code {code} ({text}): {_REFUSED[code]}")
        raise SinkBusy(f"{self._endpoint.url}: HTTP {status}" + (f", code {code}" if code is not None else "") +
                    f": {text}")

    def _accepted(self, chunk: list[int], answer: dict[str, Any], progress: _Progress) -> None:
        if not self.settings.ack:
            progress.delivered.update(chunk)
            return
        ack_id = answer.get("ackId")
        if not isinstance(ack_id, int):
            raise SinkRefusedError(f"{self._endpoint.url}: HEC accepted events without an ackId: {_REFUSED[14]}")
        progress.awaiting_ack[ack_id] = chunk

    async def _narrow(self, payloads: Sequence[bytes], chunk: list[int], progress: _Progress, status: int,
                      code: int | None, text: str, answer: dict[str, Any]) -> None:
        bad = answer.get("invalid-event-number")
        if status == 400 and isinstance(bad, int) and 0 <= bad < len(chunk):
            progress.rejected[chunk[bad]] = f"hec code {code}: {text}"
            before, after = chunk[:bad], chunk[bad + 1:]
            if self.settings.ack:
                await self._post(payloads, before, progress)  # no ackId covers them: send again
            else:
                progress.delivered.update(before)
            await self._post(payloads, after, progress)
            return
        if len(chunk) == 1:
            reason = ("hec 413: the event alone is larger than HEC's max_content_length" if status == 413
                      else f"hec code {code}: {text}")
            progress.rejected[chunk[0]] = reason
            return
        half = len(chunk) // 2
        await self._post(payloads, chunk[:half], progress)
        await self._post(payloads, chunk[half:], progress)

    async def _await_acks(self, progress: _Progress) -> None:
        """Poll /ack until every ackId came back true or `ack_timeout_seconds` passed; the
        events of the ackIds still missing are sent again by the runtime."""
        with self.waiting(ACK):
            await self._poll_acks(progress)

    async def _poll_acks(self, progress: _Progress) -> None:
        deadline = time.monotonic() + self.settings.ack_timeout_seconds
        interval = _FIRST_ACK_POLL
        waiting = progress.awaiting_ack
        while waiting and time.monotonic() < deadline:
            await asyncio.sleep(min(interval, max(0.0, deadline - time.monotonic())))
            interval = min(interval * 2, self.settings.ack_poll_seconds)
            try:
                response = await self._endpoint.request(
                    "POST", ACK_PATH, orjson.dumps({"acks": sorted(waiting)}), params={"channel": self.channel},
                    compress=False,
                )
            except RetryableSinkError as exc:
                self.answered()  # a poll made: Splunk away is not a stall of the forwarder
                log.warning("cannot poll HEC acknowledgements; polling again", extra={"sink": self.name,
                                                                                       "error": str(exc)})
                continue
            # Each poll answered is progress for the watchdog, acknowledged or not yet: indexers
            # slow to acknowledge are not a stall of the forwarder.
            self.answered()
            answer = _json(response)
            if response.status_code == 400 and answer.get("code") == 14:
                raise SinkRefusedError(f"{self._endpoint.url}: /ack answered code 14: {_REFUSED[14]}")
            if response.status_code in (401, 403):
                raise SinkAuthError(
                    f"{self._endpoint.url}: HEC refused the token on /ack: fix sinks[{self.name}].token")
            acks = answer.get("acks")
            if response.status_code != 200 or not isinstance(acks, dict):
                continue
            for key, indexed in acks.items():
                if indexed is True and key.isdigit() and int(key) in waiting:
                    progress.delivered.update(waiting.pop(int(key)))
        if waiting:
            lost = sum(len(v) for v in waiting.values())
            log.warning("no indexer acknowledgement in time: sending those events again",
                        extra={"sink": self.name, "events": lost, "ack_ids": sorted(waiting),
                               "timeout_seconds": self.settings.ack_timeout_seconds})
            waiting.clear()

    async def healthcheck(self) -> str:
        response = await self._endpoint.request("GET", HEALTH_PATH,
                                                params={"ack": "true"} if self.settings.ack else None)
        answer = _json(response)
        code, text = answer.get("code"), answer.get("text") or short_body(response)
        if response.status_code == 200:
            return f"HEC at {self._endpoint.url}: {text} (code {code})" + (", indexer ack on" if self.settings.ack
                                                                            else "")
        if code in (21, 22) or response.status_code in (401, 403):
            raise SinkAuthError(f"{self._endpoint.url}: HEC refused the token ({text}): fix sinks[{self.name}].token")
        raise SinkError(f"{self._endpoint.url}: HEC is not healthy: HTTP {response.status_code}, code {code}: {text}")

    async def close(self) -> None:
        await self._endpoint.close()


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        value = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


__all__: Sequence[str] = (
    "DEFAULT_PORTS", "DESTINATION_KEY", "SplunkHecSink",
    "SplunkHecSinkSettings", "cim_action", "cim_event", "epoch_seconds", "splunk_host",
)
