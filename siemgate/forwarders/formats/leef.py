"""IBM QRadar LEEF 2.0 from the normalized view; pure, no I/O.

    LEEF:2.0|Vendor|Product|Version|EventID|x09|key=value<TAB>key=value...

Guarantees:

- The attribute delimiter is TAB, LEEF's own default, declared explicitly as `x09` in the
  LEEF 2.0 delimiter field. Values rarely contain a tab, unlike `^` (regular expressions,
  payloads), so nothing a SOC would search for is altered. (A relay that escapes control
  characters, e.g. rsyslog's default `#011`, must not sit between siemgate and QRadar; or
  set rsyslog's `parser.escapeControlCharacterTab="off"` there.)
- LEEF has no escape mechanism. So: in attribute values every control character (the tab
  delimiter, CR, LF ...) becomes a space; `=` and `|` stay (a parser splits an attribute at
  its first `=`, and the header has a fixed number of fields). In the EventID header field,
  which comes from the event, `|` becomes `_` and control characters become spaces. Vendor,
  product and version come from the config, which refuses `|` and control characters.
  The result never contains a CR or LF byte.
- `sev` is LEEF's 1-10 scale, always present. A word reads by the normalized `level`, with
  the CEF numbers of docs/DESIGN.md: critical 10, high 8, medium 5, low 3; unknown (an
  unlisted word, a number off the integration's scale, no severity) 5, the middle of the
  scale as in CEF: neither buried nor escalated, and `severity=unknown` says so. A number
  keeps its place on the integration's scale (`severity_position`, 0 least to 1 most
  severe): `ceil(position * 10)`, at least 1 (0-10 scores as they are, rounded up; 1-5
  scores 1 3 5 8 10), held within its level's range (low 1-3, medium 4-6, high 7-8,
  critical 9-10) so that `sev` never contradicts `severity`.
- EventID: `TEST` / `CONFIRMATION` for those kinds, else the rule id, else the event type,
  else `event` (at most 255 characters); `cat` is the event type.
- Attributes, in order, each only when the event has a value:

    devTime + devTimeFormat   the event's time, `yyyy-MM-dd'T'HH:mm:ss.SSSZ` (milliseconds, +0000)
    sev, cat, src (an IP address without zone; any other source address, `fe80::1%eth0`
    included, goes to srcHostName), url,
    method, action, policy (rule name), ruleId, resource (asset), eventId, integration,
    kind, severity (the level: critical, high, medium, low, unknown), timestampInvalid (the
    vendor's time as written, when it was no real instant: devTime is then the receive time),
    msg
  The full event is not carried: use `rfc5424` for it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Final

from siemgate.forwarders.formats.addresses import ip_text
from siemgate.forwarders.formats.syslog import event_time, utf8
from siemgate.forwarders.normalize import NormalizedEvent
from siemgate.record import Level

LEEF_SEVERITY: Final[Mapping[Level, int]] = {"critical": 10, "high": 8, "medium": 5, "low": 3, "unknown": 5}
# The `sev` values of each level: a number from the vendor stays within its level's.
LEEF_SEVERITY_RANGE: Final[Mapping[Level, tuple[int, int]]] = {"critical": (9, 10), "high": (7, 8),
                                                               "medium": (4, 6), "low": (1, 3), "unknown": (5, 5)}
DELIMITER: Final = "\t"
DELIMITER_FIELD: Final = "x09"
DEV_TIME_FORMAT: Final = "yyyy-MM-dd'T'HH:mm:ss.SSSZ"
MAX_EVENT_ID: Final = 255

_CONTROLS: Final = {c: " " for c in (*range(0x20), 0x7F)}
_VALUE: Final = str.maketrans(_CONTROLS)
_HEADER: Final = str.maketrans({**_CONTROLS, ord("|"): "_"})


def value_clean(text: str) -> str:
    """An attribute value: control characters (the TAB delimiter included) made spaces."""
    return text.translate(_VALUE)


def header_clean(text: str) -> str:
    """A header field: `|` made `_`, control characters made spaces (LEEF cannot escape)."""
    return text.translate(_HEADER)


def event_id(event: NormalizedEvent) -> str:
    if event.kind != "event":
        return event.kind.upper()
    return (event.rule_id or event.event_type or "event")[:MAX_EVENT_ID]


def _plain_address(text: str) -> str | None:
    """The IPv4 or IPv6 address `text` holds, without a zone (`fe80::1%eth0` is no address
    outside its host, and QRadar's `src` is an IP field) or the white space around it; else None."""
    ip = ip_text(text)
    return ip.address if ip is not None and ip.zone is None else None


def sev(event: NormalizedEvent) -> int:
    """LEEF `sev`, 1-10: by the level, or the vendor's number's place on its scale within
    the level's range."""
    position = event.severity_position
    if position is None or event.level == "unknown":
        return LEEF_SEVERITY[event.level]
    low, high = LEEF_SEVERITY_RANGE[event.level]
    # Rounded first: 0.7 * 10 is 7.000000000000001, whose ceiling is not 7.
    return min(high, max(low, math.ceil(round(position * 10, 6))))


def attributes(event: NormalizedEvent) -> list[tuple[str, str]]:
    """The (key, unescaped value) pairs, in order; empty values are left out."""
    moment = event_time(event)
    pairs: list[tuple[str, str | None]] = []
    if moment is not None:
        millis = moment.microsecond // 1000
        # The year zero-padded by hand (yyyy): %Y writes year 1 as `1` (glibc).
        pairs += [("devTime", f"{moment.year:04d}{moment:-%m-%dT%H:%M:%S}.{millis:03d}+0000"),
                  ("devTimeFormat", DEV_TIME_FORMAT)]
    pairs += [("sev", str(sev(event))), ("cat", event.event_type)]
    if event.source_ip:
        address = _plain_address(event.source_ip)
        pairs.append(("src", address) if address is not None else ("srcHostName", event.source_ip))
    pairs += [
        ("url", event.url),
        ("method", event.method),
        ("action", event.action),
        ("policy", event.rule),
        ("ruleId", event.rule_id),
        ("resource", event.asset),
        ("eventId", event.id),
        ("integration", event.integration),
        ("kind", event.kind),
        ("severity", event.level),
        ("timestampInvalid", event.timestamp_invalid),
        ("msg", event.message),
    ]
    return [(key, value) for key, value in pairs if value]


def encode_leef(event: NormalizedEvent, *, vendor: str, product: str, version: str) -> bytes:
    """One LEEF:2.0 record (no syslog header), UTF-8."""
    header = "|".join(header_clean(field) for field in (vendor, product, version, event_id(event), DELIMITER_FIELD))
    body = DELIMITER.join(f"{key}={value_clean(value)}" for key, value in attributes(event))
    return utf8(f"LEEF:2.0|{header}|{body}")


__all__: Sequence[str] = ("DELIMITER", "LEEF_SEVERITY", "encode_leef", "header_clean", "sev", "value_clean")
