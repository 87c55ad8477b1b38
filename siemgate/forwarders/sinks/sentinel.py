"""The Microsoft Sentinel sink (`type: sentinel`): the Azure Monitor Logs Ingestion API.

    POST {endpoint}/dataCollectionRules/{dcr_immutable_id}/streams/{stream}?api-version=2023-01-01
    Authorization: Bearer <Entra ID token for https://monitor.azure.com/.default>
    Content-Type: application/json, Content-Encoding: gzip
    [{"TimeGenerated": "2026-11-28T21:00:00.123456Z", "EventId": "...", ...}, ...]

`endpoint` is a data collection endpoint (DCE) or the DCR's own logs ingestion endpoint; the
DCR's stream declaration (`Custom-SiemgateAlerts`, deploy/azure/) takes the rows and its
`transformKql` writes them to the custom table `SiemgateAlerts_CL` of the Sentinel workspace.
The token comes from Microsoft Entra ID by the client-credentials grant (`entra.py`: a client
secret, a certificate, or a federated workload identity token on AKS).

**The cap per call.** Microsoft documents the Logs Ingestion API's limits (Azure Monitor
service limits, "Logs Ingestion API"; docs/PROTOCOLS.md, "Azure Monitor Logs Ingestion API",
names the source): "Maximum size of API call: 1 MB, both
compressed and uncompressed data"; "Maximum size for field values: 64 KB, fields longer
than 64 KB are truncated"; per DCR "2 GB data/minute" and "12,000 requests/minute", both
answered 429 with "Retry after the duration listed in the `Retry-After` header". So a batch
goes out in as many calls as needed to keep each call's JSON array, before gzip, at most
`batch.max_bytes` (default 1,000,000 bytes; at most 1,048,576, which azure-monitor-ingestion
uses as its own chunk size). A vendor event over 64 KB is truncated by Azure in
`AdditionalFields`; a text column over `FIELD_MAX_BYTES` is cut here (`cut_columns`, ending with
`…`), as Azure would cut it, so that it takes no room in the call for nothing.

**Rows** (ASIM-minded names; `deploy/azure/` declares exactly these columns, `COLUMNS`):
`TimeGenerated` (the event's own timestamp, else the receive time), `EventId` (the record's
deterministic id), `EventSeverity` (High/Medium/Low; `Informational` for unknown, as ASIM spells
them), `EventType`, `EventMessage`, `SrcIpAddr` (an IP address only, as ASIM types it: a host
name stays in `AdditionalFields`), `Url`, `HttpRequestMethod`, `RuleName`,
`RuleId`, `DvcAction`, `DstHostname` (the attacked asset), `EventVendor`/`EventProduct`
(settings), `AdditionalFields` (the vendor's event, dynamic, as the ingest received it),
`SiemgateIntegration`, `SiemgateKind`, `SiemgateReceivedTime`. A column without a value is
left out of the row (null in the table).

**OCSF** (`event_format: ocsf`, shaped by `ocsf:` as for the file and HEC sinks): each row
is an OCSF record (`formats/ocsf.py`) for the stream `Custom-SiemgateOcsf` (deploy/azure/
declares it and its table `SiemgateOcsf_CL`): the record whole in the dynamic column `ocsf`
(the vendor's event under `ocsf.unmapped`, as received), `metadata_uid` (`metadata.uid`, the
deterministic id) and `TimeGenerated` (OCSF `time`, an instant; the epoch milliseconds stay in
`ocsf.time`), `OCSF_COLUMNS`. The record's fields are sent once: the DCR's `transformKql`
extends the table's columns an analyst filters on without parsing from `ocsf`, the record's
top-level fields of those names (`class_uid = toint(ocsf.class_uid)`, `activity_id`,
`severity_id`, `src_endpoint`, `http_request` ...: the same values, OCSF's names;
`OCSF_TABLE_COLUMNS`); a field the record lacks is null there. A Detection Finding keeps its
endpoints under `evidences`, a column too. A row over `FIELD_MAX_BYTES` sends the vendor's
event in the column `unmapped` instead of `ocsf.unmapped` (`ocsf_row`), and a record still over
it by long texts of its own has its longest strings cut (`fit_strings`): Azure's 64 KB cut then
reaches only the vendor's event, never `ocsf` or the columns read from it.

**Sentinel does not deduplicate.** Delivery is at least once: a redelivered event (a crash,
an answer lost) is a second row with the same `EventId`. Deduplicate in KQL:

    SiemgateAlerts_CL | summarize arg_max(TimeGenerated, *) by EventId
    SiemgateOcsf_CL | summarize arg_max(TimeGenerated, *) by metadata_uid

What each answer does:

- 204 (any 2xx): delivered.
- 413: the call is split in halves; an event too large on its own is dead-lettered.
- 400: the call is refused whole (Azure says not which row): halved until the refused event is
  alone, which is dead-lettered with Azure's error code and message; the others are delivered.
  A 400 naming the stream, the DCR or the API version (`CONFIG_ERRORS`) is a configuration
  error instead: `SinkRefusedError`, the sink pauses, nothing is dead-lettered.
- 401: the token is refreshed once and the call sent again; a second 401: `SinkAuthError`.
  403 (the identity lacks the role `Monitoring Metrics Publisher` on the DCR): `SinkAuthError`.
  404 (no such DCR at this endpoint): `SinkRefusedError`. The runtime pauses the sink
  (`siemgate_sink_up 0`, an ERROR log) and retries; nothing is dropped.
- 429, 503 (with `Retry-After`, which the runtime honours before the next attempt), other 5xx,
  408, timeouts, connection errors: retried; what this batch already got confirmed stays
  delivered, the rest is sent again.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar, Final, Literal
from urllib.parse import quote, urlsplit

import httpx
import orjson

from siemgate.errors import ConfigError, RetryableSinkError, SinkAuthError, SinkBusy, SinkError, SinkRefusedError
from siemgate.forwarders.formats.addresses import ip_text
from siemgate.forwarders.formats.ocsf import OcsfSettings, ocsf_event
from siemgate.forwarders.normalize import NormalizedEvent
from siemgate.forwarders.sinks.base import SendResult, Sink, SinkSettings, TlsSettings
from siemgate.forwarders.sinks.entra import EntraApp, EntraTokens, retry_after_seconds
from siemgate.forwarders.sinks.http import DEFAULT_PORTS, HttpBatchSettings, HttpEndpoint, check_url, chunks_by_size
from siemgate.record import dumps
from siemgate.secrets import Secret

log = logging.getLogger("siemgate.forward.sentinel")

# Where this sink connects, for the Helm chart's NetworkPolicy (`make helm-schema` reads it): the
# settings key holding its destination URL, and each URL scheme's port when the URL gives none.
# (The token endpoint, `authority_host`, is https on 443 too.)
DESTINATION_KEY: Final = "endpoint"

API_VERSION: Final = "2023-01-01"
# Microsoft's documented maximum size of one Logs Ingestion API call (see above).
MAX_CALL_BYTES: Final = 1_048_576
DEFAULT_STREAM: Final = "Custom-SiemgateAlerts"
OCSF_STREAM: Final = "Custom-SiemgateOcsf"
PUBLIC_AUTHORITY: Final = "https://login.microsoftonline.com"
PUBLIC_SCOPE: Final = "https://monitor.azure.com/.default"
# Azure Monitor's token scope in each cloud, by its Entra ID authority host.
SCOPES: Final = {
    "login.microsoftonline.com": PUBLIC_SCOPE,
    "login.microsoftonline.us": "https://monitor.azure.us/.default",
    "login.chinacloudapi.cn": "https://monitor.azure.cn/.default",
}

# The row's columns and their Log Analytics types: the DCR's stream declaration (deploy/azure/)
# must declare exactly these (tests/deploy/test_azure.py).
COLUMNS: Final[Mapping[str, str]] = {
    "TimeGenerated": "datetime",
    "EventId": "string",
    "EventSeverity": "string",
    "EventType": "string",
    "EventMessage": "string",
    "SrcIpAddr": "string",
    "Url": "string",
    "HttpRequestMethod": "string",
    "RuleName": "string",
    "RuleId": "string",
    "DvcAction": "string",
    "DstHostname": "string",
    "EventVendor": "string",
    "EventProduct": "string",
    "AdditionalFields": "dynamic",
    "SiemgateIntegration": "string",
    "SiemgateKind": "string",
    "SiemgateReceivedTime": "datetime",
}
# The OCSF row's columns (event_format: ocsf) and their Log Analytics types: the stream
# `Custom-SiemgateOcsf` of deploy/azure/ declares exactly these (tests/deploy/test_azure.py).
# The record goes once, whole, in `ocsf`: the DCR's transformation projects the table's other
# columns from it (OCSF_TABLE_COLUMNS).
OCSF_COLUMNS: Final[Mapping[str, str]] = {
    "TimeGenerated": "datetime",
    "metadata_uid": "string",
    "ocsf": "dynamic",
    "unmapped": "dynamic",
}
# Azure truncates a field value over 64 KB (see above). A row of at most this many bytes has no
# field over it; an OCSF row over it sends the vendor's event in its own column `unmapped`
# (`ocsf_row`), so that `ocsf`, and the columns the transformation reads from it, stay whole.
FIELD_MAX_BYTES: Final = 64_000
# The columns of the table SiemgateOcsf_CL: the row's, and beside them, as columns an analyst
# filters on without parsing, the record's top-level fields of these names, which the DCR's
# `transformKql` extends from `ocsf` (`class_uid = toint(ocsf.class_uid)` ...).
OCSF_TABLE_COLUMNS: Final[Mapping[str, str]] = {
    "TimeGenerated": "datetime",
    "metadata_uid": "string",
    "class_uid": "int",
    "class_name": "string",
    "category_uid": "int",
    "activity_id": "int",
    "activity_name": "string",
    "type_uid": "long",
    "severity_id": "int",
    "severity": "string",
    "status_id": "int",
    "disposition_id": "int",
    "disposition": "string",
    "action_id": "int",
    "is_alert": "boolean",
    "message": "string",
    "src_endpoint": "dynamic",
    "dst_endpoint": "dynamic",
    "http_request": "dynamic",
    "firewall_rule": "dynamic",
    "attacks": "dynamic",
    "finding_info": "dynamic",
    "evidences": "dynamic",
    "ocsf": "dynamic",
    "unmapped": "dynamic",
}
# The stream each event format's rows are declared by (deploy/azure/).
STREAMS: Final[Mapping[str, str]] = {"asim": DEFAULT_STREAM, "ocsf": OCSF_STREAM}
# ASIM's EventSeverity values.
# ASIM's EventSeverity has no level above High: critical is High there.
SEVERITY: Final = {"critical": "High", "high": "High", "medium": "Medium", "low": "Low", "unknown": "Informational"}
# 400 error codes that name the configuration, not a row: the sink pauses instead of dead-lettering.
CONFIG_ERRORS: Final = frozenset({"InvalidStream", "InvalidDataCollectionRule", "InvalidApiVersion",
                                  "UnsupportedApiVersion", "MissingApiVersionParameter"})
_BUSY: Final = frozenset({408, 429, 500, 502, 503, 504})
_DCR_ID = re.compile(r"dcr-[0-9A-Za-z]{1,64}")
_STREAM = re.compile(r"(Custom|Microsoft)-[A-Za-z0-9_]{1,100}")
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True, kw_only=True)
class SentinelBatchSettings(HttpBatchSettings):
    """`batch:` of the sentinel sink: calls of at most 1,000,000 bytes of JSON by default (a
    `batch:` block that leaves `max_bytes` out keeps this default, not the HTTP sinks' 5 MB)."""

    max_bytes: int = 1_000_000


@dataclass(frozen=True, kw_only=True)
class SentinelSinkSettings(SinkSettings):
    type: ClassVar[str] = "sentinel"
    # The data collection endpoint, or the DCR's own logs ingestion endpoint (https://...).
    endpoint: str
    # The DCR's immutable id (dcr-...), on its JSON view or `az monitor data-collection rule show`.
    dcr_immutable_id: str
    # asim: siemgate's ASIM-minded rows (COLUMNS, stream Custom-SiemgateAlerts); ocsf: OCSF
    # records (OCSF_COLUMNS, stream Custom-SiemgateOcsf), shaped by `ocsf:`.
    event_format: Literal["asim", "ocsf"] = "asim"
    ocsf: OcsfSettings = field(default_factory=OcsfSettings)
    # The DCR's stream; default: the event format's (Custom-SiemgateAlerts, Custom-SiemgateOcsf).
    stream: str | None = None
    tenant_id: str
    client_id: str
    # Exactly one credential: a client secret, a certificate (PEM with its RSA private key) or a
    # federated token file (AKS workload identity: ${AZURE_FEDERATED_TOKEN_FILE}).
    client_secret: Secret | None = None
    certificate: str | None = None
    certificate_password: Secret | None = None
    federated_token_file: str | None = None
    # Sovereign clouds: https://login.microsoftonline.us (US Government), https://login.chinacloudapi.cn
    # (operated by 21Vianet).
    authority_host: str = PUBLIC_AUTHORITY
    # Default: Azure Monitor's scope in the authority's cloud (SCOPES), else the public cloud's.
    scope: str | None = None
    # A token is refreshed this long before it expires.
    token_refresh_seconds: float = 300.0
    # ASIM's EventVendor / EventProduct of every row (default product: the integration's name).
    event_vendor: str = "siemgate"
    event_product: str | None = None
    gzip: bool = True
    timeout_seconds: float = 30.0
    tls: TlsSettings = field(default_factory=TlsSettings)
    batch: SentinelBatchSettings = field(default_factory=SentinelBatchSettings)

    def __post_init__(self) -> None:
        try:
            check_url(self.endpoint)
        except ConfigError as exc:
            raise ConfigError("endpoint", str(exc).split(": ", 1)[-1]) from None
        try:
            authority = check_url(self.authority_host)
        except ConfigError as exc:
            raise ConfigError("authority_host", str(exc).split(": ", 1)[-1]) from None
        parts = urlsplit(authority)
        if parts.path:
            raise ConfigError("authority_host", "is a scheme and host only (e.g. https://login.microsoftonline.us)")
        if parts.scheme != "https" and parts.hostname not in ("127.0.0.1", "::1", "localhost"):
            raise ConfigError("authority_host", "must be https (the credential goes there)")
        if not _DCR_ID.fullmatch(self.dcr_immutable_id):
            raise ConfigError("dcr_immutable_id", f"must look like dcr-0123abcd... (the DCR's immutableId), "
                                                  f"not {self.dcr_immutable_id!r}")
        if self.stream is not None and not _STREAM.fullmatch(self.stream):
            raise ConfigError("stream", f"must be a DCR stream name such as {STREAMS[self.event_format]}, "
                                        f"not {self.stream!r}")
        if not _TENANT.fullmatch(self.tenant_id):
            raise ConfigError("tenant_id", "must be the directory (tenant) id or a domain of it")
        if not self.client_id.strip():
            raise ConfigError("client_id", "is empty (the application (client) id)")
        given = [name for name in ("client_secret", "certificate", "federated_token_file")
                 if getattr(self, name) is not None]
        if len(given) != 1:
            raise ConfigError("client_secret", "set exactly one of client_secret, certificate, federated_token_file"
                              + (f" (not {', '.join(given)})" if given else ""))
        if self.client_secret is not None and not self.client_secret:
            raise ConfigError("client_secret", "is empty (check the ${VAR} it uses)")
        if self.certificate_password is not None and self.certificate is None:
            raise ConfigError("certificate_password", "goes with certificate")
        if self.scope is not None and not self.scope.strip():
            raise ConfigError("scope", "is empty")
        if self.batch.max_bytes > MAX_CALL_BYTES:
            raise ConfigError("batch.max_bytes", f"must be at most {MAX_CALL_BYTES}: the Logs Ingestion API refuses "
                              "calls over 1 MB")
        if self.timeout_seconds <= 0 or self.token_refresh_seconds < 0:
            raise ConfigError("timeout_seconds", "timeout_seconds must be > 0 and token_refresh_seconds >= 0")

    @property
    def stream_name(self) -> str:
        """`stream`, or the event format's stream (STREAMS)."""
        return self.stream if self.stream is not None else STREAMS[self.event_format]

    @property
    def token_scope(self) -> str:
        """`scope`, or Azure Monitor's in the authority host's cloud."""
        if self.scope is not None:
            return self.scope.strip()
        return SCOPES.get(urlsplit(self.authority_host.strip()).hostname or "", PUBLIC_SCOPE)

    def app(self) -> EntraApp:
        return EntraApp(authority_host=check_url(self.authority_host), tenant_id=self.tenant_id,
                        client_id=self.client_id.strip(), scope=self.token_scope, client_secret=self.client_secret,
                        certificate=self.certificate, certificate_password=self.certificate_password,
                        federated_token_file=self.federated_token_file)


def row(event: NormalizedEvent, *, vendor: str, product: str | None, additional: Any = None) -> dict[str, Any]:
    """The row of one event (`COLUMNS`, in that order), without the columns that have no value."""
    return _row(event, vendor, product, event.event if additional is None else additional)


def _row(event: NormalizedEvent, vendor: str, product: str | None, additional: Any) -> dict[str, Any]:
    """`row`, its arguments by position (`SentinelSink.encode` calls it for every event)."""
    # A column per statement, each left out when None, each field read once: this runs for
    # every event.
    values: dict[str, Any] = {}
    value: str | None = event.timestamp
    if value is not None:
        values["TimeGenerated"] = value
    value = event.id
    if value is not None:
        values["EventId"] = value
    values["EventSeverity"] = SEVERITY[event.level]
    value = event.event_type
    if value is not None:
        values["EventType"] = value
    value = event.message
    if value is not None:
        values["EventMessage"] = value
    value = event.source_ip
    if value is not None:
        # ASIM's SrcIpAddr is an IP address: the address alone (no IPv6 zone, no white space
        # around it); a host name or `1.2.3.4:443` stays in AdditionalFields only.
        ip = ip_text(value)
        if ip is not None:
            values["SrcIpAddr"] = ip.address
    value = event.url
    if value is not None:
        values["Url"] = value
    value = event.method
    if value is not None:
        values["HttpRequestMethod"] = value
    value = event.rule
    if value is not None:
        values["RuleName"] = value
    value = event.rule_id
    if value is not None:
        values["RuleId"] = value
    value = event.action
    if value is not None:
        values["DvcAction"] = value
    value = event.asset
    if value is not None:
        values["DstHostname"] = value
    if vendor is not None:
        values["EventVendor"] = vendor
    integration = event.integration
    product = product or integration
    if product is not None:
        values["EventProduct"] = product
    if additional is not None:
        values["AdditionalFields"] = additional
    if integration is not None:
        values["SiemgateIntegration"] = integration
    value = event.kind
    if value is not None:
        values["SiemgateKind"] = value
    value = event.received_at
    if value:
        values["SiemgateReceivedTime"] = value
    return values


def cut_columns(values: dict[str, Any]) -> dict[str, Any]:
    """An ASIM row with each text column over `FIELD_MAX_BYTES` of UTF-8 cut to fit, ending with
    `…`: Azure would cut it past 64 KB anyway, and sent whole it took room in the call for
    nothing (a 500 KB message is in `EventMessage` and again in `AdditionalFields`: such a row
    passed the 1 MB call limit and was dead-lettered)."""
    for name, value in values.items():
        if isinstance(value, str) and len(value) > FIELD_MAX_BYTES // 4:
            data = value.encode("utf-8", "surrogatepass")
            if len(data) > FIELD_MAX_BYTES:
                values[name] = data[:FIELD_MAX_BYTES - 3].decode("utf-8", "ignore") + "\u2026"
    return values


def ocsf_row(record: dict[str, Any], *, unmapped_apart: bool = False) -> dict[str, Any]:
    """The OCSF row (`OCSF_COLUMNS`) of an OCSF record (`formats/ocsf.py`): the record whole
    under `ocsf`, its time as `TimeGenerated` and its id as `metadata_uid`. (The record's
    fields go once: the DCR's transformation makes the table's other columns of them.)

    `unmapped_apart` (for a row over `FIELD_MAX_BYTES`: `SentinelSink.encode`): the vendor's
    event goes in the column `unmapped` instead of `ocsf.unmapped`. Azure truncates a field
    over 64 KB, and Microsoft does not say whether before or after the transformation: a
    truncated `ocsf` would be no JSON, and the filter columns read from it would be empty.
    Apart, only the vendor's event is cut (as `AdditionalFields` of the ASIM rows)."""
    row = {"TimeGenerated": _iso_ms(record["time"]), "metadata_uid": record["metadata"]["uid"], "ocsf": record}
    if unmapped_apart:
        row["ocsf"] = fit_strings({name: value for name, value in record.items() if name != "unmapped"},
                                  FIELD_MAX_BYTES)
        if "unmapped" in record:
            row["unmapped"] = record["unmapped"]
    return row


# The shortest a string `fit_strings` cuts a value to (OCSF's captions and ids are shorter).
_MIN_CUT_CHARS: Final = 64


def fit_strings(value: dict[str, Any], limit: int) -> dict[str, Any]:
    """`value`, or, when its JSON is over `limit` bytes, a copy whose longest strings are cut
    (to the same length, the greatest that fits, ending with `…`): what keeps an OCSF row's
    `ocsf` whole under Azure's 64 KB cut when the record itself holds a long text (a URL with
    a 30 KB query is in it twice, `url_string` and `query_string`). The vendor's event, with
    the whole text, goes apart (`unmapped`)."""
    if len(dumps(value)) <= limit:
        return value
    low, high = _MIN_CUT_CHARS, max(_MIN_CUT_CHARS, min(_longest_string(value), limit))
    while low < high:  # the greatest cut that fits
        middle = (low + high + 1) // 2
        if len(dumps(_cut_strings(value, middle))) <= limit:
            low = middle
        else:
            high = middle - 1
    cut: dict[str, Any] = _cut_strings(value, low)
    return cut


def _longest_string(value: object) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return max((_longest_string(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return max((_longest_string(v) for v in value), default=0)
    return 0


def _cut_strings(value: Any, chars: int) -> Any:
    """A copy of `value` with every string longer than `chars` characters cut to `chars`, its last one `…`."""
    if isinstance(value, str):
        return value if len(value) <= chars else f"{value[:chars - 1]}\u2026"
    if isinstance(value, dict):
        return {key: _cut_strings(item, chars) for key, item in value.items()}
    if isinstance(value, list):
        return [_cut_strings(item, chars) for item in value]
    return value


def _iso_ms(epoch_ms: int) -> str:
    """Epoch milliseconds as RFC 3339 UTC with 6 fraction digits (as the ASIM rows write time)."""
    seconds, millis = divmod(epoch_ms, 1000)
    return f"{_iso_seconds(seconds)}.{millis:03d}000Z"


@lru_cache(maxsize=4096)
def _iso_seconds(seconds: int) -> str:
    # Cached: the events of a batch mostly share their seconds. The year zero-padded by hand:
    # %Y writes year 1 as `1` (glibc), no datetime Azure reads.
    moment = time.gmtime(seconds)
    return f"{moment.tm_year:04d}{time.strftime('-%m-%dT%H:%M:%S', moment)}"


@dataclass
class _Progress:
    delivered: set[int] = field(default_factory=set)
    rejected: dict[int, str] = field(default_factory=dict)


class SentinelSink(Sink[SentinelSinkSettings]):
    def __init__(self, settings: SentinelSinkSettings) -> None:
        super().__init__(settings)
        self.tokens = EntraTokens(settings.app(), sink=settings.name, tls=settings.tls,
                                  timeout_seconds=settings.timeout_seconds,
                                  refresh_before_seconds=settings.token_refresh_seconds)
        self._endpoint = HttpEndpoint(
            name=settings.name, url=check_url(settings.endpoint), tls=settings.tls,
            timeout_seconds=settings.timeout_seconds, gzip=settings.gzip,
            headers={"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "siemgate"},
        )
        self._path = (f"/dataCollectionRules/{quote(settings.dcr_immutable_id, safe='')}"
                      f"/streams/{quote(settings.stream_name, safe='')}")
        self._params = {"api-version": API_VERSION}
        # What `encode` reads of the settings for every event (they never change: a hot reload
        # makes a new sink). `_ocsf`: the OCSF settings with event_format ocsf, else None.
        self._ocsf = settings.ocsf if settings.event_format == "ocsf" else None
        self._vendor = settings.event_vendor
        self._product = settings.event_product

    @property
    def url(self) -> str:
        return f"{self._endpoint.url}{self._path}?api-version={API_VERSION}"

    def row(self, event: NormalizedEvent) -> dict[str, Any]:
        """The row as a mapping (what `encode` writes, with the vendor's event decoded)."""
        if self.settings.event_format == "ocsf":
            return ocsf_row(ocsf_event(event, self.settings.ocsf),
                            unmapped_apart=len(self.encode(event)) > FIELD_MAX_BYTES)
        return cut_columns(row(event, vendor=self.settings.event_vendor, product=self.settings.event_product))

    def encode(self, event: NormalizedEvent) -> bytes:
        """The row as JSON, the vendor's event as the ingest received it (no second encoding)."""
        raw = orjson.Fragment(event.event_bytes())
        if self._ocsf is not None:
            record = ocsf_event(event, self._ocsf, vendor_event=raw)
            data = orjson.dumps(ocsf_row(record))
            # (The length of the row bounds every field's: only a large row is looked at again.)
            return data if len(data) <= FIELD_MAX_BYTES else orjson.dumps(ocsf_row(record, unmapped_apart=True))
        data = orjson.dumps(_row(event, self._vendor, self._product, raw))
        # (Only a row over FIELD_MAX_BYTES can have a column over it.)
        return data if len(data) <= FIELD_MAX_BYTES else orjson.dumps(
            cut_columns(_row(event, self._vendor, self._product, raw)))

    def rows(self, events: Sequence[NormalizedEvent]) -> list[bytes]:
        """Each event's row (`encode`), in order: what the calls' JSON arrays hold."""
        return [self.encode(e) for e in events]

    def _calls(self, items: Sequence[bytes]) -> list[range]:
        # A call is `[` + the rows joined by `,` + `]`: each row costs one byte more.
        return list(chunks_by_size([len(i) + 1 for i in items], self.settings.batch.max_bytes - 1))

    def bodies(self, events: Sequence[NormalizedEvent]) -> list[bytes]:
        """The calls' bodies of a batch, before gzip, as `send` cuts them when all goes well
        (bench/forward_cpu.py measures this)."""
        items = self.rows(events)
        return [_array(items, chunk) for chunk in self._calls(items)]

    # -- sending

    async def send(self, events: Sequence[NormalizedEvent]) -> SendResult:
        items = self.rows(events)
        progress = _Progress()
        error: SinkError | None = None
        retry_after: float | None = None
        try:
            for chunk in self._calls(items):
                await self._post(items, list(chunk), progress)
        except SinkBusy as exc:
            error, retry_after = exc, exc.retry_after
        except (RetryableSinkError, SinkAuthError) as exc:
            error = exc
        settled = progress.delivered | progress.rejected.keys()
        retry = [i for i in range(len(items)) if i not in settled]
        if error is not None and not settled:
            raise error
        if error is not None:
            log.warning("Azure took part of the batch; the rest is sent again",
                        extra={"sink": self.name, "delivered": len(progress.delivered), "retry": len(retry),
                               "error": str(error)})
        return SendResult(retry=retry, rejected=sorted(progress.rejected.items()),
                          retry_after=retry_after if retry else None)

    async def _call(self, body: bytes) -> httpx.Response:
        """One call with the current token; a 401 refreshes the token and sends it once more."""
        token = await self.tokens.token()
        response = await self._endpoint.request("POST", self._path, body, params=self._params,
                                                headers={"Authorization": f"Bearer {token}"})
        if response.status_code == 401:
            log.info("Azure refused the access token: requesting a new one", extra={"sink": self.name})
            token = await self.tokens.refresh(token)
            response = await self._endpoint.request("POST", self._path, body, params=self._params,
                                                    headers={"Authorization": f"Bearer {token}"})
        return response

    async def _post(self, items: Sequence[bytes], chunk: list[int], progress: _Progress) -> None:
        if not chunk:
            return
        response = await self._call(_array(items, chunk))
        status = response.status_code
        if 200 <= status < 300:
            progress.delivered.update(chunk)
            return
        code, message = azure_error(response)
        if status == 413 or (status == 400 and code not in CONFIG_ERRORS):
            if len(chunk) == 1:
                progress.rejected[chunk[0]] = (
                    f"azure {code or status}: Azure answered {status}"
                    + (": the row alone is larger than the call limit" if status == 413 and not message else "")
                    + (f": {message}" if message else ""))
                return
            half = len(chunk) // 2
            await self._post(items, chunk[:half], progress)
            await self._post(items, chunk[half:], progress)
            return
        if status == 401:
            raise SinkAuthError(f"{self.url}: Azure refused a fresh access token too (401 {code}: {message}): check "
                                f"sinks[{self.name}].tenant_id (the DCR's tenant) and scope")
        if status == 403:
            raise SinkAuthError(f"{self.url}: Azure answered 403 ({code}: {message}): give client "
                                f"{self.settings.client_id} the role Monitoring Metrics Publisher on the DCR "
                                "(it can take up to 30 minutes to apply)")
        if status == 404 or status == 400:
            raise SinkRefusedError(f"{self.url}: Azure answered {status} ({code}: {message}): check "
                                   f"sinks[{self.name}].endpoint, dcr_immutable_id and stream")
        if status in _BUSY or status >= 500:
            raise SinkBusy(f"{self.url}: HTTP {status}" + (f" ({code}: {message})" if code or message else ""),
                           retry_after=retry_after_seconds(response.headers.get("retry-after")))
        raise SinkRefusedError(f"{self.url}: Azure answered {status} ({code}: {message})")

    async def healthcheck(self) -> str:
        """A token, then an empty call (`[]`): it passes Azure's token, role and DCR/stream checks
        and writes no row."""
        await self.tokens.token()
        expires = round(self.tokens.expires_in / 60)
        response = await self._call(b"[]")
        status = response.status_code
        if 200 <= status < 300:
            return (f"Entra ID token for {self.settings.client_id} ({self.tokens.app.credential_kind}, valid "
                    f"{expires} min); DCR {self.settings.dcr_immutable_id} stream {self.settings.stream_name} at "
                    f"{self._endpoint.url} accepted an empty call (no row written)")
        code, message = azure_error(response)
        if status in (401, 403):
            raise SinkAuthError(f"{self.url}: token fetched, but Azure answered {status} ({code}: {message})"
                                + (": give the client the role Monitoring Metrics Publisher on the DCR"
                                   if status == 403 else ""))
        raise SinkError(f"{self.url}: token fetched, but Azure answered {status} ({code}: {message})")

    async def close(self) -> None:
        await self._endpoint.close()
        await self.tokens.close()


def _array(items: Sequence[bytes], chunk: Sequence[int]) -> bytes:
    """The JSON array of these rows (a call's body)."""
    return b"[" + b",".join(items[i] for i in chunk) + b"]"


def azure_error(response: httpx.Response) -> tuple[str, str]:
    """Azure's `{"error": {"code": ..., "message": ...}}`: (code, message), "" when absent."""
    try:
        answer = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        answer = None
    error = answer.get("error") if isinstance(answer, dict) else None
    if isinstance(error, dict):
        return str(error.get("code") or ""), " ".join(str(error.get("message") or "").split())[:500]
    text = " ".join(response.text.split())
    return "", text[:300]


__all__: Sequence[str] = (
    "API_VERSION", "COLUMNS", "DEFAULT_PORTS", "DEFAULT_STREAM", "DESTINATION_KEY", "FIELD_MAX_BYTES", "MAX_CALL_BYTES",
    "OCSF_COLUMNS", "OCSF_STREAM", "OCSF_TABLE_COLUMNS", "SCOPES", "SEVERITY", "STREAMS", "SentinelBatchSettings",
    "SentinelSink", "SentinelSinkSettings", "azure_error", "cut_columns", "fit_strings", "ocsf_row", "row",
)
