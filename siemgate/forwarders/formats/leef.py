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
- `sev` is QRadar's 1-10 scale, with the CEF numbers of docs/DESIGN.md by the normalized
  `level`: critical 10, high 8, medium 5, low 3.
  For unknown severity `sev` is left out (as for ECS: no number is invented), so QRadar
  applies the severity of the event's QID mapping; `severity=unknown` says so explicitly.
- EventID: `TEST` / `CONFIRMATION` for those kinds, else the rule id, else the event type,
  else `event` (at most 255 characters); `cat` is the event type.
- Attributes, in order, each only when the event has a value:

    devTime + devTimeFormat   the event's time, `yyyy-MM-dd'T'HH:mm:ss.SSSZ` (milliseconds, +0000)
    sev, cat, src (an IP address; any other source address goes to srcHostName), url,
    method, action, policy (rule name), ruleId, resource (asset), eventId, integration,
    kind, severity (the level: critical, high, medium, low, unknown), timestampInvalid (the
    vendor's time as written, when it was no real instant: devTime is then the receive time),
    msg
  The full event is not carried: use `rfc5424` for it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Final

from siemgate.forwarders.formats.syslog import event_time, utf8
from siemgate.forwarders.normalize import NormalizedEvent
from siemgate.record import Level

LEEF_SEVERITY: Final[Mapping[Level, int | None]] = {"critical": 10, "high": 8, "medium": 5, "low": 3,
                                                    "unknown": None}
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


def attributes(event: NormalizedEvent) -> list[tuple[str, str]]:
    """The (key, unescaped value) pairs, in order; empty values are left out."""
    moment = event_time(event)
    severity = LEEF_SEVERITY[event.level]
    pairs: list[tuple[str, str | None]] = []
    if moment is not None:
        millis = moment.microsecond // 1000
        pairs += [("devTime", f"{moment:%Y-%m-%dT%H:%M:%S}.{millis:03d}+0000"), ("devTimeFormat", DEV_TIME_FORMAT)]
    pairs += [("sev", str(severity) if severity is not None else None), ("cat", event.event_type)]
    if event.source_ip:
        try:
            ipaddress.ip_address(event.source_ip)
            pairs.append(("src", event.source_ip))
        except ValueError:
            pairs.append(("srcHostName", event.source_ip))
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


__all__: Sequence[str] = ("DELIMITER", "LEEF_SEVERITY", "encode_leef", "header_clean", "value_clean")
