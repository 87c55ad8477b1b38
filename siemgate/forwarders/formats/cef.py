"""ArcSight CEF from the normalized view; pure, no I/O.

    CEF:0|Device Vendor|Device Product|Device Version|Signature ID|Name|Severity|Extension

Guarantees:

- Escaping follows CEF's two rules. Header fields: `\\` -> `\\\\`, `|` -> `\\|`; newlines
  are not allowed there, so every control character becomes a space. Extension values:
  `\\` -> `\\\\`, `=` -> `\\=`, LF -> the two characters `\\n`, CR -> `\\r`, any other
  control character -> a space; `|` and spaces are left alone (CEF does not escape them).
  The result therefore never contains a CR or LF byte. Everything else, non-ASCII included,
  is UTF-8 as it is.
- Severity follows docs/DESIGN.md, by the normalized `level`: critical 10, high 8, medium 5,
  low 3, and unknown 5: always a number 0-10 (Logstash's CEF codec and Vector refuse a word).
- Signature ID: `TEST` / `CONFIRMATION` for those kinds, else the rule id, else the event
  type, else `event`. Name: the rule name, else the message, else the event type, else a
  fixed text. Both are cut after escaping (1023 and 512 characters), never inside an escape.
- Extension values are cut (before escaping) to the extension dictionary's lengths: act 63,
  externalId 40, dvchost 100, cs1-cs6 4000, the others 1023 (`EXTENSION_LIMITS`).
- Extension keys come from CEF's dictionary where one fits, custom strings where none does:

    rt              the event's time, epoch milliseconds: the receive time when the event has
                    none or one that is no real instant (then cs6 timestampInvalid is the original)
    externalId      the event id (the vendor's, or siemgate's deterministic hash)
    cat             event type
    src / c6a2 / shost   source address: IPv4 / IPv6 (with c6a2Label) / anything else
    request, requestMethod, act, dhost, msg   url, method, action, asset, message
    dvchost         the HOSTNAME siemgate reports as
    cs1 integration, cs2 rule, cs3 ruleId, cs4 kind, cs5 severity (the vendor's own label, else the level),
                    cs6 timestampInvalid, each with its csNLabel
  Keys whose value the event does not have are left out. The full event is not carried: use
  `rfc5424` for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from siemgate.forwarders.formats.addresses import ip_text
from siemgate.forwarders.formats.syslog import event_time, utf8
from siemgate.forwarders.normalize import NormalizedEvent
from siemgate.record import Level

# Per level; CEF's bands (docs/PROTOCOLS.md): 0-3 low, 4-6 medium, 7-8 high, 9-10 very high.
# Always a number: Logstash's CEF codec (ECS mode, a `long`) and Vector refuse the word
# `Unknown`; unknown is 5, the middle of the scale, neither buried nor escalated (cs5 says
# `unknown`, or the vendor's label).
CEF_SEVERITY: Final[Mapping[Level, str]] = {"critical": "10", "high": "8", "medium": "5", "low": "3",
                                            "unknown": "5"}
MAX_NAME: Final = 512
MAX_SIGNATURE_ID: Final = 1023
# The extension dictionary's lengths (ArcSight "Implementing ArcSight CEF", docs/PROTOCOLS.md),
# in characters of the value as stored (before escaping); keys not listed are short by nature
# (rt, src, c6a2) or 1023.
EXTENSION_LIMITS: Final[Mapping[str, int]] = {
    "act": 63, "externalId": 40, "dvchost": 100, "request": 1023, "requestMethod": 1023, "cat": 1023,
    "msg": 1023, "dhost": 1023, "shost": 1023, "c6a2Label": 1023,
    **{f"cs{n}": 4000 for n in range(1, 7)}, **{f"cs{n}Label": 1023 for n in range(1, 7)},
}
DEFAULT_EXTENSION_LIMIT: Final = 1023

_CONTROLS: Final = {c: " " for c in (*range(0x20), 0x7F)}
_HEADER: Final = str.maketrans({**_CONTROLS, ord("\\"): "\\\\", ord("|"): "\\|"})
_EXTENSION: Final = str.maketrans(
    {**_CONTROLS, ord("\\"): "\\\\", ord("="): "\\=", ord("\n"): "\\n", ord("\r"): "\\r"}
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def header_escape(text: str) -> str:
    """A CEF header field: `\\` and `|` escaped, control characters made spaces."""
    return text.translate(_HEADER)


def extension_escape(text: str) -> str:
    """A CEF extension value: `\\` and `=` escaped, CR/LF as `\\r`/`\\n`, other controls spaces."""
    return text.translate(_EXTENSION)


def capped_header(text: str, limit: int) -> str:
    """A header field escaped, then cut to `limit` characters: never past the limit, and never
    inside an escape (a lone trailing `\\` would escape the next `|`)."""
    escaped = header_escape(text)
    if len(escaped) <= limit:
        return escaped
    cut = escaped[:limit]
    if (len(cut) - len(cut.rstrip("\\"))) % 2:
        cut = cut[:-1]
    return cut


def signature_id(event: NormalizedEvent) -> str:
    """The Signature ID, unescaped and uncut (`encode_cef` escapes, then cuts it to 1023)."""
    if event.kind != "event":
        return event.kind.upper()
    return event.rule_id or event.event_type or "event"


def event_name(event: NormalizedEvent) -> str:
    """The Name, unescaped and uncut (`encode_cef` escapes, then cuts it to 512)."""
    if event.kind == "test":
        return "Test message"
    if event.kind == "confirmation":
        return "Confirmation message"
    return event.rule or event.message or event.event_type or "Security event"


def epoch_millis(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _source(address: str) -> list[tuple[str, str]]:
    """`src` for IPv4, `c6a2` for IPv6, `shost` for anything else (a zoned IPv6 address too:
    it names no address outside its host, and CEF's address fields take none)."""
    ip = ip_text(address)
    if ip is None or ip.zone is not None:
        return [("shost", address)]
    # The address alone, without the white space the vendor had around it (" 1.2.3.4\n").
    if ip.version == 4:
        return [("src", ip.address)]
    return [("c6a2", ip.address), ("c6a2Label", "Source IPv6 Address")]


def extension(event: NormalizedEvent, *, device_host: str | None = None) -> list[tuple[str, str]]:
    """The extension's (key, unescaped value) pairs, in order; empty values are left out."""
    moment = event_time(event)
    pairs: list[tuple[str, str | None]] = [
        ("rt", str(epoch_millis(moment)) if moment is not None else None),
        ("externalId", event.id),
        ("cat", event.event_type),
        *(_source(event.source_ip) if event.source_ip else ()),
        ("request", event.url),
        ("requestMethod", event.method),
        ("act", event.action),
        ("dhost", event.asset),
        ("msg", event.message),
        ("dvchost", device_host),
    ]
    custom = (("integration", event.integration), ("rule", event.rule), ("ruleId", event.rule_id),
              ("kind", event.kind), ("severity", event.vendor_severity or event.level),
              ("timestampInvalid", event.timestamp_invalid))
    for number, (label, value) in enumerate(custom, start=1):
        if value:
            pairs += [(f"cs{number}Label", label), (f"cs{number}", value)]
    return [(key, value[:EXTENSION_LIMITS.get(key, DEFAULT_EXTENSION_LIMIT)]) for key, value in pairs if value]


def encode_cef(
    event: NormalizedEvent, *, vendor: str, product: str, version: str, device_host: str | None = None
) -> bytes:
    """One CEF:0 record (no syslog header), UTF-8."""
    header = "|".join((header_escape(vendor), header_escape(product), header_escape(version),
                       capped_header(signature_id(event), MAX_SIGNATURE_ID), capped_header(event_name(event), MAX_NAME),
                       CEF_SEVERITY[event.level]))
    ext = " ".join(f"{key}={extension_escape(value)}" for key, value in extension(event, device_host=device_host))
    return utf8(f"CEF:0|{header}|{ext}")


__all__: Sequence[str] = ("CEF_SEVERITY", "EXTENSION_LIMITS", "encode_cef", "extension_escape", "header_escape")
