"""Syslog messages (RFC 5424 and RFC 3164) from the normalized view; pure, no I/O.

Guarantees of every encoder here (and of `cef` and `leef`, which are carried in these headers):

- The result is one message without transport framing, UTF-8, and contains **no CR or LF
  byte**: the event travels as compact JSON (which escapes control characters), and control
  characters in header fields and structured-data values are replaced by a space. So LF
  framing can never be broken by the content.
- Severity follows docs/DESIGN.md, "Severity, per destination", by the normalized `level`:
  critical -> 1 alert, high -> 2 critical, medium -> 4 warning, low -> 5 notice, unknown ->
  6 informational. PRI = facility * 8 + severity.
- The timestamp is the event's own (the normalized `timestamp`), never the send time; an event
  without one, or with one that is no real instant (`2025-02-30`), has the receive time
  (the normalizer's fallback, the same in every format).

RFC 5424 (`rfc5424`):

    <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD-ID id=".." kind=".." ...] BOM{event JSON}

- TIMESTAMP: RFC 3339 in UTC with 6 fraction digits and `Z`; `-` when the event time is
  unusable, or in the year 2100 or later (rsyslog's parser refuses those and then misreads
  the whole header). HOSTNAME (<= 255), APP-NAME (<= 48), PROCID (`-`, or the pid with
  `include_pid`), MSGID (<= 32) are PRINTUSASCII: other characters become `_`, too long is cut.
- MSGID: `TEST` / `CONFIRMATION` for those kinds; else the event type; `-` when none.
- STRUCTURED-DATA: one element with the private SD-ID (default `siemgate@32473`) and the
  params `id`, `kind`, `integration`, `severity` (the level, critical included), then `rule`,
  `rule_id`, `source_ip` when the event has them, and `timestamp_invalid` (the vendor's time
  as written) when the event's time was no real instant (TIMESTAMP is then the receive time).
  `"`, `\\` and `]` in values are backslash-escaped (RFC 5424 section 6.3.3).
- MSG: the UTF-8 BOM, then the vendor's event as compact JSON, untouched.

RFC 3164 (`rfc3164`):

    <PRI>Mmm dd hh:mm:ss HOSTNAME TAG: {event JSON}

- The day is space-padded (`Jan  5`), month names are English whatever the locale. The time
  is in UTC by default (`rfc3164_timezone: local` for the machine's zone): the format has no
  zone field, and UTC is what a receiver in a container assumes anyway.
- HOSTNAME is the host's first label (RFC 3164 wants no domain part), or the IP address.
- TAG is the app name cut to 32 characters, followed by `[pid]` with `include_pid`.
- Size: RFC 3164 describes packets of at most 1024 bytes. The encoder does **not** truncate
  (cutting JSON makes it unusable, and today's receivers take far more, rsyslog 8k by
  default); over TCP/TLS the message goes whole, over UDP the sink's `max_datagram_bytes`
  rule (`truncate_utf8`) applies: set it to 1024 for a strict RFC 3164 receiver.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

import siemgate
from siemgate.errors import ConfigError
from siemgate.forwarders.normalize import NormalizedEvent
from siemgate.record import Level, dumps

BOM: Final = b"\xef\xbb\xbf"
NIL: Final = "-"

FACILITIES: Final[Mapping[str, int]] = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
    "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "audit": 13, "alert": 14,
    "clock": 15, "local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20,
    "local5": 21, "local6": 22, "local7": 23,
}  # fmt: skip

# RFC 5424 severity per level (docs/DESIGN.md, "Severity, per destination"). high keeps 2
# "critical", what every receiver has seen from siemgate so far (its rules and searches key on
# it); the vendor's critical goes one above, 1 "alert" ("action must be taken immediately").
# 0 emergency stays for the host itself (rsyslog's default `*.emerg` rule writes to every
# logged-in terminal).
SYSLOG_SEVERITY: Final[Mapping[Level, int]] = {"critical": 1, "high": 2, "medium": 4, "low": 5, "unknown": 6}

MAX_HOSTNAME: Final = 255
MAX_APP_NAME: Final = 48
MAX_MSGID: Final = 32
MAX_TAG: Final = 32

_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_NOT_PRINTUSASCII: Final = re.compile(r"[^\x21-\x7e]")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_SD_ID: Final = re.compile(r'[^\x21-\x7e]|[=\]"]')
_PRIVATE_SD_ID: Final = re.compile(r"[^@]+@[0-9]+(\.[0-9]+)*")
_SD_ESCAPE: Final = re.compile(r'["\\\]]')
_RFC3339_UTC: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
# rsyslog's RFC 5424 parser refuses a TIMESTAMP from the year 2100 on and then misreads the
# whole header (HOSTNAME, APP-NAME, structured data: tests/fidelity). Such a time (a real
# instant, but a vendor's typo) is sent as NILVALUE `-`: the receiver takes its receive time,
# the event's JSON keeps the vendor's text. (Compared as text: "2100" sorts after every year
# before it, and "-" before every digit.)
_FIRST_UNREADABLE_YEAR: Final = "2100"


@dataclass(frozen=True, kw_only=True)
class SyslogFormatSettings:
    """How messages are formatted (the syslog sink's settings extend this).

    facility: a name (`auth`, `local0` ...) or a number 0-23; default `local0`, the range
      reserved for local use, so a receiver can route siemgate's events on their own.
    hostname: HOSTNAME; default this machine's FQDN, else its host name.
    app_name: APP-NAME (RFC 5424) and TAG (RFC 3164, cut to 32).
    include_pid: PROCID is the process id (else `-`).
    sd_id: the private SD-ID of the structured-data element (`name@PEN`).
    rfc3164_timezone: the zone of RFC 3164 timestamps, which cannot say which zone they are in.
    cef_leef_header: the syslog header CEF and LEEF messages are carried in.
    leef_header: the syslog header of LEEF, overriding `cef_leef_header`: `ibm`, QRadar's
      documented form `<PRI>1 yyyy-MM-ddTHH:mm:ss.SSSZ HOST LEEF:...` (the default, unless
      `cef_leef_header` is rfc3164); `rfc5424`, the full RFC 5424 header with APP-NAME, MSGID
      `LEEF` and `-` for structured data that siemgate wrote before (6 fraction digits);
      `rfc3164`.
    vendor, product, product_version: CEF's Device Vendor/Product/Version and LEEF's
      Vendor/Product/Version: together they tell the SIEM which parser applies.
    """

    facility: int | str = "local0"
    hostname: str | None = None
    app_name: str = "siemgate"
    include_pid: bool = False
    sd_id: str = "siemgate@32473"
    rfc3164_timezone: Literal["utc", "local"] = "utc"
    cef_leef_header: Literal["rfc5424", "rfc3164"] = "rfc5424"
    leef_header: Literal["ibm", "rfc5424", "rfc3164"] | None = None
    vendor: str = "siemgate"
    product: str = "siemgate"
    product_version: str = siemgate.__version__

    def __post_init__(self) -> None:
        facility_code(self.facility)
        if self.hostname is not None:
            _check_printusascii("hostname", self.hostname, MAX_HOSTNAME)
        _check_printusascii("app_name", self.app_name, MAX_APP_NAME)
        if any(c in self.app_name for c in ":[]"):
            raise ConfigError("app_name", "must not contain ':', '[' or ']' (they end an RFC 3164 TAG)")
        if not 1 <= len(self.sd_id) <= 32 or _SD_ID.search(self.sd_id):
            raise ConfigError("sd_id", "must be 1-32 printable ASCII characters without space, '=', ']' or '\"'")
        if not _PRIVATE_SD_ID.fullmatch(self.sd_id):
            raise ConfigError(
                "sd_id", "must be a private SD-ID, name@<enterprise number>, e.g. siemgate@32473 "
                "(names without @ are reserved by IANA)"
            )
        for key, limit in (("vendor", 63), ("product", 63), ("product_version", 31)):
            value = getattr(self, key)
            if not value or len(value) > limit or "|" in value or _CONTROL.search(value):
                raise ConfigError(key, f"must be 1-{limit} characters, without '|' or control characters")

    @property
    def facility_code(self) -> int:
        return facility_code(self.facility)

    @property
    def leef_wrapper(self) -> Literal["ibm", "rfc5424", "rfc3164"]:
        """The syslog header LEEF is carried in: `leef_header`, else rfc3164 when
        `cef_leef_header` says so, else IBM's form."""
        if self.leef_header is not None:
            return self.leef_header
        return "rfc3164" if self.cef_leef_header == "rfc3164" else "ibm"


def facility_code(facility: int | str) -> int:
    """The facility number for a name or a number 0-23; ConfigError otherwise."""
    if isinstance(facility, int) and 0 <= facility <= 23:
        return facility
    if isinstance(facility, str):
        if facility.strip().isdigit():
            return facility_code(int(facility))
        code = FACILITIES.get(facility.strip().lower())
        if code is not None:
            return code
    names = ", ".join(FACILITIES)
    raise ConfigError("facility", f"must be a number 0-23 or one of {names}, not {facility!r}")


def _check_printusascii(key: str, value: str, limit: int) -> None:
    if not 1 <= len(value) <= limit or _NOT_PRINTUSASCII.search(value):
        raise ConfigError(key, f"must be 1-{limit} printable ASCII characters without spaces")


def pri(facility: int, severity: Level) -> int:
    """PRIVAL = facility * 8 + the syslog severity of the level."""
    return facility * 8 + SYSLOG_SEVERITY[severity]


@functools.cache
def machine_hostname() -> str:
    """This machine's FQDN when it has one, else its host name, as a valid HOSTNAME."""
    name = socket.gethostname()
    if "." not in name:
        fqdn = socket.getfqdn(name)
        if "." in fqdn and not fqdn.startswith("localhost"):
            name = fqdn
    return printusascii(name, MAX_HOSTNAME)


def printusascii(text: str, limit: int) -> str:
    """`text` as an RFC 5424 header field: other characters become `_`, cut to `limit`; `-` if empty."""
    return _NOT_PRINTUSASCII.sub("_", text[:limit]) or NIL


def utf8(text: str) -> bytes:
    """UTF-8, with a `?` for what cannot be encoded (a lone surrogate from a JSON `\\ud800`)."""
    return text.encode("utf-8", "replace")


def one_line(text: str) -> str:
    """Control characters (CR, LF, TAB ...) replaced by a space."""
    return _CONTROL.sub(" ", text)


def event_time(event: NormalizedEvent) -> datetime | None:
    """The event's time, timezone-aware UTC, or None when it does not parse."""
    try:
        moment = datetime.fromisoformat(event.timestamp)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def rfc3339(moment: datetime | None) -> str:
    """RFC 5424 TIMESTAMP: `YYYY-MM-DDThh:mm:ss.ffffffZ` (UTC), or `-`."""
    if moment is None:
        return NIL
    moment = moment.astimezone(UTC)
    return f"{moment.year:04d}{moment:-%m-%dT%H:%M:%S.%fZ}"  # %Y writes year 999 as `999` (glibc)


def bsd_timestamp(moment: datetime) -> str:
    """RFC 3164 TIMESTAMP: `Mmm dd hh:mm:ss`, day padded with a space, English month."""
    return f"{_MONTHS[moment.month - 1]} {moment.day:2d} {moment:%H:%M:%S}"


_MSGIDS: dict[str, str] = {}


def msgid(event: NormalizedEvent) -> str:
    """`TEST` / `CONFIRMATION` for those kinds, else the event type as a MSGID, else `-`."""
    if event.kind == "test":
        return "TEST"
    if event.kind == "confirmation":
        return "CONFIRMATION"
    event_type = event.event_type
    if not event_type:
        return NIL
    # Event types repeat from event to event: remember their MSGIDs (bounded, network input).
    found = _MSGIDS.get(event_type)
    if found is None:
        found = printusascii(event_type, MAX_MSGID)
        if len(_MSGIDS) < 4096:
            _MSGIDS[event_type] = found
    return found


def _plain(value: str) -> bool:
    """Whether `value` needs no escaping as an SD-PARAM value."""
    return value.isprintable() and '"' not in value and "\\" not in value and "]" not in value


def sd_escape(value: str) -> str:
    """An SD-PARAM value: `"`, `\\` and `]` backslash-escaped; control characters made spaces."""
    # Most values need neither step: checked with C-speed string methods first.
    if _plain(value):
        return value
    return _SD_ESCAPE.sub(lambda m: "\\" + m.group(0), one_line(value))


def structured_data(event: NormalizedEvent, sd_id: str) -> str:
    """One SD-ELEMENT, `[sd_id id=".." kind=".." integration=".." severity=".." ...]`."""
    params: list[tuple[str, str | None]] = [
        ("id", event.id),
        ("kind", event.kind),
        ("integration", event.integration),
        ("severity", event.level),
        ("rule", event.rule),
        ("rule_id", event.rule_id),
        ("source_ip", event.source_ip),
        ("timestamp_invalid", event.timestamp_invalid),
    ]
    body = "".join(f' {name}="{sd_escape(value)}"' for name, value in params if value is not None)
    return f"[{sd_id}{body}]"


def resolved_hostname(settings: SyslogFormatSettings) -> str:
    """The configured HOSTNAME, else this machine's."""
    return settings.hostname or machine_hostname()


def rfc5424_header(event: NormalizedEvent, settings: SyslogFormatSettings, *, message_id: str) -> str:
    """`<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID` (no trailing space)."""
    procid = str(os.getpid()) if settings.include_pid else NIL
    prival = pri(settings.facility_code, event.level)
    host = resolved_hostname(settings)
    # The normalizer writes exactly this form already: no parse and format again.
    stamp = event.timestamp if _RFC3339_UTC.fullmatch(event.timestamp) else rfc3339(event_time(event))
    if stamp >= _FIRST_UNREADABLE_YEAR:
        stamp = NIL
    return f"<{prival}>1 {stamp} {host} {settings.app_name} {procid} {message_id}"


def ibm_header(event: NormalizedEvent, settings: SyslogFormatSettings) -> str:
    """QRadar's documented RFC 5424 header for LEEF, `<PRI>1 yyyy-MM-ddTHH:mm:ss.SSSZ HOST`
    (milliseconds, UTC as `Z`; no APP-NAME, PROCID, MSGID or structured data: the LEEF
    header follows at once). The time is now if the event has none."""
    moment = (event_time(event) or datetime.now(UTC)).astimezone(UTC)
    stamp = f"{moment.year:04d}{moment:-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"  # (not %Y: `1` for year 1)
    return f"<{pri(settings.facility_code, event.level)}>1 {stamp} {resolved_hostname(settings)}"


def rfc3164_header(event: NormalizedEvent, settings: SyslogFormatSettings) -> str:
    """`<PRI>Mmm dd hh:mm:ss HOSTNAME` (no trailing space); the time is now if the event has none."""
    moment = event_time(event) or datetime.now(UTC)
    moment = moment.astimezone() if settings.rfc3164_timezone == "local" else moment.astimezone(UTC)
    host = bsd_hostname(resolved_hostname(settings))
    return f"<{pri(settings.facility_code, event.level)}>{bsd_timestamp(moment)} {host}"


def bsd_hostname(name: str) -> str:
    """RFC 3164 HOSTNAME: an IP address as it is, a name without its domain part."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name.split(".", 1)[0] or NIL
    return name


def rfc3164_tag(settings: SyslogFormatSettings) -> str:
    tag = settings.app_name[:MAX_TAG]
    return f"{tag}[{os.getpid()}]" if settings.include_pid else tag


def rfc5424(event: NormalizedEvent, settings: SyslogFormatSettings) -> bytes:
    """One RFC 5424 message: header, structured data, BOM, the event as compact JSON."""
    header = rfc5424_header(event, settings, message_id=msgid(event))
    sd = structured_data(event, settings.sd_id)
    return b"".join((utf8(f"{header} {sd} "), BOM, dumps(event.event)))


# The openings of the event's own SD params.
_ID: Final = ' id="'
_RULE: Final = ' rule="'
_RULE_ID: Final = ' rule_id="'
_SOURCE_IP: Final = ' source_ip="'
_TIMESTAMP_INVALID: Final = ' timestamp_invalid="'


def _sd_param(opening: str, value: str | None) -> str:
    """`opening` (` name="`), the escaped value and the closing quote; nothing for None."""
    return "" if value is None else f'{opening}{sd_escape(value)}"'


class Rfc5424Encoder:
    """`rfc5424(event, settings)`, byte for byte, with what repeats from event to event (the
    PRI, the header fields after the timestamp, the record's SD params) formatted once.

    The caches are bounded: MSGIDs and integrations come from the network."""

    _MAX_CACHED: Final = 4096

    def __init__(self, settings: SyslogFormatSettings) -> None:
        self._settings = settings
        self._include_pid = settings.include_pid
        self._pid: int | None = None  # the process the cached PROCIDs are for (include_pid)
        # "<PRI>1 " per severity.
        self._priorities: dict[Level, str] = {}
        # " HOSTNAME APP-NAME PROCID MSGID [SD-ID" per MSGID.
        self._middles: dict[str, str] = {}
        # ' kind=".." integration=".." severity=".."' per (kind, integration, severity).
        self._record_params: dict[tuple[str, str, str], str] = {}

    def __call__(self, event: NormalizedEvent) -> bytes:
        # Read as what they may be at run time: a record that the ingest did not write keeps its
        # own `kind` and `integration` (Normalizer._normalize_any), any JSON value or a str subclass.
        kind: object = event.kind
        integration: object = event.integration
        severity = event.level
        if type(kind) is not str or type(integration) is not str:
            return rfc5424(event, self._settings)  # not what a Normalizer makes: the reference
        priority = self._priorities.get(severity) or self._priority(severity)
        stamp = event.timestamp
        if not _RFC3339_UTC.fullmatch(stamp):
            stamp = rfc3339(event_time(event))
        if stamp >= _FIRST_UNREADABLE_YEAR:
            stamp = NIL
        if self._include_pid and self._pid != os.getpid():
            self._forget_procid()
        message_id = msgid(event)
        middle = self._middles.get(message_id) or self._middle(message_id)
        record_params = self._record_params.get((kind, integration, severity)) or self._record_param(
            kind, integration, severity)
        ident, rule, rule_id, source_ip = event.id, event.rule, event.rule_id, event.source_ip
        if (ident is not None and rule is not None and rule_id is not None and source_ip is not None
                and event.timestamp_invalid is None and _plain(ident + rule + rule_id + source_ip)):
            # The common case, every param there and none to escape: one check for all.
            text = (f'{priority}{stamp}{middle}{_ID}{ident}"{record_params}{_RULE}{rule}"{_RULE_ID}{rule_id}"'
                    f'{_SOURCE_IP}{source_ip}"] ')
        else:
            text = (f"{priority}{stamp}{middle}{_sd_param(_ID, ident)}{record_params}{_sd_param(_RULE, rule)}"
                    f"{_sd_param(_RULE_ID, rule_id)}{_sd_param(_SOURCE_IP, source_ip)}"
                    f"{_sd_param(_TIMESTAMP_INVALID, event.timestamp_invalid)}] ")
        return b"".join((utf8(text), BOM, dumps(event.event)))

    def _priority(self, severity: Level) -> str:
        found = f"<{pri(self._settings.facility_code, severity)}>1 "
        self._priorities[severity] = found
        return found

    def _middle(self, message_id: str) -> str:
        settings = self._settings
        procid = str(os.getpid()) if settings.include_pid else NIL
        found = f" {resolved_hostname(settings)} {settings.app_name} {procid} {message_id} [{settings.sd_id}"
        if len(self._middles) < self._MAX_CACHED:
            self._middles[message_id] = found
        return found

    def _record_param(self, kind: str, integration: str, severity: Level) -> str:
        found = f' kind="{sd_escape(kind)}" integration="{sd_escape(integration)}" severity="{sd_escape(severity)}"'
        if len(self._record_params) < self._MAX_CACHED:
            self._record_params[kind, integration, severity] = found
        return found

    def _forget_procid(self) -> None:
        self._middles.clear()
        self._pid = os.getpid()


def rfc3164(event: NormalizedEvent, settings: SyslogFormatSettings) -> bytes:
    """One RFC 3164 message: `<PRI>Mmm dd hh:mm:ss HOSTNAME TAG: {event JSON}`; never truncated."""
    header = rfc3164_header(event, settings)
    return b"".join((utf8(f"{header} {rfc3164_tag(settings)}: "), dumps(event.event)))


def truncate_utf8(message: bytes, limit: int) -> bytes:
    """`message` cut to at most `limit` bytes without splitting a UTF-8 character.

    The UDP rule: one message per datagram, and a message longer than the datagram limit
    keeps its first `limit` bytes (its header and structured data come first, so they
    survive), minus the bytes of a character the cut would split."""
    if len(message) <= limit:
        return message
    end = limit
    # A continuation byte (10xxxxxx) at the cut: back off to the start of its character.
    while end > 0 and message[end] & 0xC0 == 0x80:
        end -= 1
    return message[:end]


__all__: Sequence[str] = (
    "BOM",
    "FACILITIES",
    "Rfc5424Encoder",
    "SYSLOG_SEVERITY",
    "SyslogFormatSettings",
    "event_time",
    "facility_code",
    "ibm_header",
    "machine_hostname",
    "pri",
    "rfc3164",
    "rfc5424",
    "sd_escape",
    "structured_data",
    "truncate_utf8",
)
