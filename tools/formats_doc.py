"""docs/FORMATS.md's generated parts: one vendor event through every format siemgate writes.

    python -m tools.formats_doc               # rewrite them
    python -m tools.formats_doc --check       # exit 1, naming the blocks, when one is stale

Nothing here is typed by hand: the vendor's event goes through the ingest's severity reading
and record encoding (`record.make_record`, `record.DEFAULT_SCHEME`) and the forwarders'
`Normalizer`, and each output is what the sink's own encoder returns (the syslog sink's
`build_encoder` per format, `SplunkHecSink.encode`, `ElasticsearchSink.encode`,
`SentinelSink.encode` with either event format, the file sink's `to_json_line` and
`to_ocsf_line`). What would change from run to run
(receive time, batch, peer, host name, ingest time, product version) is fixed below.

Each generated part sits between `<!-- generated:NAME -->` and `<!-- /generated:NAME -->`
in docs/FORMATS.md; the text around them is the doc's own.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

from siemgate.forwarders.formats.ocsf import OcsfSettings
from siemgate.forwarders.normalize import NormalizedEvent, Normalizer
from siemgate.forwarders.sinks.elasticsearch import ElasticsearchSink, ElasticsearchSinkSettings
from siemgate.forwarders.sinks.file import to_json_line, to_ocsf_line
from siemgate.forwarders.sinks.sentinel import SentinelSink, SentinelSinkSettings
from siemgate.forwarders.sinks.splunk_hec import SplunkHecSink, SplunkHecSinkSettings
from siemgate.forwarders.sinks.syslog import SyslogSinkSettings, build_encoder
from siemgate.record import DEFAULT_SCHEME, Level, make_record
from siemgate.secrets import Secret
from siemgate.sink_settings import build_settings

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs/FORMATS.md"
COMMAND = "python -m tools.formats_doc"

# The vendor's event, as a WAF would post it to /webhook/appsec-prod.
VENDOR_EVENT: Mapping[str, Any] = {
    "id": "waf-7f3c9a1e",
    "timestamp": "2026-12-07T13:58:21.417Z",
    "severity": "critical",
    "type": "sql_injection",
    "source_ip": "203.0.113.45",
    "url": "https://shop.example.com/api/v2/products?id=1%27%20OR%201%3D1--",
    "method": "GET",
    "rule_name": "SQL Injection Attack Detected via libinjection",
    "rule_id": "942100",
    "action": "blocked",
    "asset": "shop-web-01",
    "message": "SQL injection blocked: id=1' OR 1=1-- in query string",
}
INTEGRATION = "appsec-prod"
RECEIVED_AT = "2026-12-07T13:58:21.902311Z"
BATCH = "5c1e0b7d2a8f4e6b9d3c1a0f7e6d5c4b"
PEER = "198.51.100.7"
HOSTNAME = "siemgate-fwd-0.soc.example"  # the syslog sink's `hostname` (default: this machine's FQDN)
INGESTED = "2026-12-07T13:58:22.013Z"  # ECS event.ingested: the time of the bulk request
PRODUCT_VERSION = "1.0.0"  # CEF/LEEF Device Version (default: siemgate's version)
IMPOSSIBLE_TIME = "2025-02-30T10:00:00Z"
# Vendor severities for the severity table, by the level they read as: a word and a score per
# level ("n/a" reads as no severity: unknown).
VENDOR_SEVERITIES: tuple[tuple[Level, object], ...] = (
    ("critical", "critical"), ("critical", 9.8), ("high", "high"), ("high", "error"), ("medium", "medium"),
    ("medium", "warning"), ("low", "low"), ("low", "informational"), ("unknown", "n/a"))

BOM = b"\xef\xbb\xbf"
_BLOCK = re.compile(r"(<!-- generated:([\w-]+) -->\n)(.*?)(<!-- /generated:\2 -->)", re.S)


def normalized(**changes: Any) -> NormalizedEvent:
    """The vendor's event (with `changes`) as the ingest records it and the forwarders read it."""
    event = {**VENDOR_EVENT, **changes}
    record = make_record(prefix="siemgate", event=event, kind="event", integration=INTEGRATION,
                         severity=DEFAULT_SCHEME.canonical(event.get("severity")), event_id=str(event["id"]),
                         received_at=RECEIVED_AT, batch=BATCH, seq=0, peer=PEER)
    return Normalizer().normalize(record.value)


def syslog_settings() -> SyslogSinkSettings:
    return SyslogSinkSettings(name="soc", address="tls://siem.example:6514", hostname=HOSTNAME,
                              product_version=PRODUCT_VERSION)


def encoders() -> dict[str, Callable[[NormalizedEvent], bytes]]:
    """Per format, the sink's own encoder (default settings but for the fixed values above)."""
    settings = syslog_settings()
    hec = SplunkHecSink(SplunkHecSinkSettings(name="splunk", url="https://splunk.example:8088",
                                              token=Secret("doc-token")))
    es = ElasticsearchSink(ElasticsearchSinkSettings(name="elastic", url="https://es.example:9200"))
    entry = {"name": "sentinel", "endpoint": "https://siemgate-dce.westeurope-1.ingest.monitor.azure.com",
             "dcr_immutable_id": "dcr-00000000000000000000000000000000", "tenant_id": "t", "client_id": "c",
             "client_secret": "doc-secret"}
    sentinel = build_settings("sentinel", entry, {}, "sinks[0]")
    assert isinstance(sentinel, SentinelSinkSettings)
    sentinel_ocsf = build_settings("sentinel", {**entry, "event_format": "ocsf"}, {}, "sinks[0]")
    assert isinstance(sentinel_ocsf, SentinelSinkSettings)
    http_activity, detection_finding = OcsfSettings(), OcsfSettings(event_class="detection_finding")
    return {
        "rfc5424": build_encoder(settings, "rfc5424"),
        "rfc3164": build_encoder(settings, "rfc3164"),
        "cef": build_encoder(settings, "cef"),
        "leef": build_encoder(settings, "leef"),
        "splunk_hec": hec.encode,
        "elasticsearch": lambda event: es.encode(event, INGESTED),
        "sentinel": SentinelSink(sentinel).encode,
        "file": to_json_line,
        "ocsf": lambda event: to_ocsf_line(event, http_activity),
        "ocsf-detection-finding": lambda event: to_ocsf_line(event, detection_finding),
        "sentinel-ocsf": SentinelSink(sentinel_ocsf).encode,
    }


def _text(message: bytes) -> str:
    """A syslog message as text, its BOM shown as `<BOM>`."""
    return message.replace(BOM, b"<BOM>").decode()


def _pretty(line: bytes) -> str:
    return orjson.dumps(orjson.loads(line), option=orjson.OPT_INDENT_2).decode()


def _fence(text: str, lang: str = "text") -> str:
    return f"```{lang}\n{text.rstrip(chr(10))}\n```\n"


def outputs(event: NormalizedEvent) -> dict[str, str]:
    """Each format's output of `event`, as the doc shows it."""
    encode = encoders()
    blocks = {name: _fence(_text(encode[name](event))) for name in ("rfc5424", "rfc3164", "cef", "leef")}
    blocks["splunk_hec"] = _fence(_pretty(encode["splunk_hec"](event)), "json")
    action, document, _ = encode["elasticsearch"](event).split(b"\n")
    blocks["elasticsearch"] = _fence(f"{action.decode()}\n{_pretty(document)}", "json")
    blocks["sentinel"] = _fence(_pretty(encode["sentinel"](event)), "json")
    blocks["file"] = _fence(encode["file"](event).decode(), "json")
    for name in ("ocsf", "ocsf-detection-finding", "sentinel-ocsf"):
        blocks[name] = _fence(_pretty(encode[name](event)), "json")
    return blocks


# -- what one event's outputs say, per format (for the tables)

def _syslog_header(message: bytes) -> list[str]:
    return [part.decode() for part in message.split(b" ", 6)[:6]]


def _cef_fields(message: bytes) -> tuple[list[str], dict[str, str]]:
    payload = message[message.index(b"CEF:"):].decode()
    head = payload.split("|", 7)
    extension = dict(re.findall(r"(\w+)=((?:[^=\\]|\\.)*?)(?= \w+=|$)", head[7]))
    return head, extension


def _leef_fields(message: bytes) -> dict[str, str]:
    payload = message[message.index(b"LEEF:"):].decode()
    return dict(pair.split("=", 1) for pair in payload.split("|", 6)[6].split("\t") if "=" in pair)


def _json(line: bytes) -> Any:
    return orjson.loads(line)


def _get(doc: Any, path: str) -> str:
    for part in path.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return "(absent)"
        doc = doc[part]
    return f"`{doc}`"


def _pri(message: bytes) -> str:
    value = int(message[1:message.index(b">")])
    return f"`<{value}>` ({value & 7})"


def severity_table() -> str:
    encode = encoders()
    rows = ["| vendor `severity` | level | routed as | RFC 5424 / 3164 PRI (severity) | CEF Severity | LEEF `sev` "
            "| HEC `event.severity` / `severity_id` | ECS `event.severity` / `event.risk_score` "
            "| Sentinel `EventSeverity` | OCSF `severity_id` / `severity` | file `level` / `severity` |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for level, word in VENDOR_SEVERITIES:
        event = normalized(severity=word)
        assert event.level == level, (level, event.level)
        head, _ = _cef_fields(encode["cef"](event))
        leef = _leef_fields(encode["leef"](event))
        hec = _json(encode["splunk_hec"](event))["event"]
        doc = _json(encode["elasticsearch"](event).split(b"\n")[1])
        row = _json(encode["sentinel"](event))
        ocsf = _json(encode["ocsf"](event))
        line = _json(encode["file"](event))
        # The table shows one PRI for both syslog formats: they must agree.
        assert _pri(encode["rfc3164"](event)) == _pri(encode["rfc5424"](event)), level
        rows.append(" | ".join((
            f"| `{orjson.dumps(word).decode()}`", level, event.severity, _pri(encode["rfc5424"](event)), f"`{head[6]}`",
            f"`{leef['sev']}`" if "sev" in leef else "(absent)",
            f"{_get(hec, 'severity')} / {_get(hec, 'severity_id')}",
            f"{_get(doc, 'event.severity')} / {_get(doc, 'event.risk_score')}",
            _get(row, "EventSeverity"), f"{_get(ocsf, 'severity_id')} / {_get(ocsf, 'severity')}",
            f"{_get(line, 'level')} / {_get(line, 'severity')}",
        )) + " |")
    return "\n".join(rows) + "\n"


def timestamp_table() -> str:
    encode = encoders()
    event = normalized(timestamp=IMPOSSIBLE_TIME)
    assert event.timestamp == RECEIVED_AT and event.timestamp_invalid == IMPOSSIBLE_TIME
    rfc5424 = encode["rfc5424"](event)
    rfc3164 = encode["rfc3164"](event)
    _, cef = _cef_fields(encode["cef"](event))
    leef = _leef_fields(encode["leef"](event))
    hec = _json(encode["splunk_hec"](event))
    doc = _json(encode["elasticsearch"](event).split(b"\n")[1])
    row = _json(encode["sentinel"](event))
    ocsf = _json(encode["ocsf"](event))
    line = _json(encode["file"](event))
    sd = re.search(rb'timestamp_invalid="([^"]*)"', rfc5424)
    rows = [
        "| format | the time it carries | the vendor's text |",
        "|---|---|---|",
        f"| RFC 5424 | TIMESTAMP `{_syslog_header(rfc5424)[1]}` | SD-PARAM `timestamp_invalid=\""
        f"{sd[1].decode() if sd else '(absent)'}\"` |",
        f"| RFC 3164 | TIMESTAMP `{rfc3164.decode()[rfc3164.index(b'>') + 1:][:15]}` | (in the event JSON only) |",
        f"| CEF | `rt={cef.get('rt', '(absent)')}` | `cs6Label={cef.get('cs6Label')}` `cs6={cef.get('cs6')}` |",
        f"| LEEF | `devTime={leef.get('devTime', '(absent)')}` | `timestampInvalid={leef.get('timestampInvalid')}` |",
        f"| Splunk HEC | `time` {_get(hec, 'time')} | `fields.timestamp_invalid` "
        f"{_get(hec, 'fields.timestamp_invalid')} |",
        f"| Elasticsearch | `@timestamp` {_get(doc, '@timestamp')} | `labels.timestamp_invalid` "
        f"{_get(doc, 'labels.timestamp_invalid')} |",
        f"| Sentinel | `TimeGenerated` {_get(row, 'TimeGenerated')} | (no column; `AdditionalFields.timestamp` "
        f"{_get(row, 'AdditionalFields.timestamp')}) |",
        f"| OCSF | `time` {_get(ocsf, 'time')} (epoch ms) | `metadata.original_time` "
        f"{_get(ocsf, 'metadata.original_time')} |",
        f"| file | `timestamp` {_get(line, 'timestamp')} | `timestamp_invalid` {_get(line, 'timestamp_invalid')} |",
    ]
    return "\n".join(rows) + "\n"


def generated() -> dict[str, str]:
    """Every generated part of docs/FORMATS.md by name."""
    vendor = orjson.dumps(VENDOR_EVENT, option=orjson.OPT_INDENT_2).decode()
    parts = {"vendor-event": _fence(vendor, "json")}
    parts.update(outputs(normalized()))
    parts["severity"] = severity_table()
    parts["timestamp"] = timestamp_table()
    return parts


def render(text: str, parts: Mapping[str, str]) -> str:
    """`text` with each generated part replaced; KeyError names a marker without a part."""
    seen = set()

    def replace(match: re.Match[str]) -> str:
        seen.add(match[2])
        return f"{match[1]}{parts[match[2]]}{match[4]}"

    result = _BLOCK.sub(replace, text)
    missing = set(parts) - seen
    if missing:
        raise KeyError(f"docs/FORMATS.md has no marker for {sorted(missing)}")
    return result


def stale_parts(text: str, parts: Mapping[str, str]) -> list[str]:
    current = {m[2]: m[3] for m in _BLOCK.finditer(text)}
    return [name for name, part in parts.items() if current.get(name) != part]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/FORMATS.md is stale")
    args = parser.parse_args(argv)
    text = DOC.read_text()
    parts = generated()
    if args.check:
        stale = stale_parts(text, parts)
        if stale:
            print(f"docs/FORMATS.md is stale ({', '.join(stale)}): run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    new = render(text, parts)
    if new != text:
        DOC.write_text(new)
        print("docs/FORMATS.md rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
