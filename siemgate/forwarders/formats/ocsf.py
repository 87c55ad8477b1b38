"""Events as OCSF (Open Cybersecurity Schema Framework) records, schema version `OCSF_VERSION`.

The default class is HTTP Activity (4002, category Network Activity 4) with the Security
Control profile: what OCSF recommends for an atomic alert of a security control on web
traffic (a WAF's block). `event_class: detection_finding` makes a Detection Finding (2004,
category Findings 2) instead, for consumers that want findings.

    {"class_uid": 4002, "class_name": "HTTP Activity", "category_uid": 4,
     "category_name": "Network Activity", "activity_id": 6, "activity_name": "Post",
     "type_uid": 400206, "type_name": "HTTP Activity: Post", "time": 1795899598123,
     "severity_id": 4, "severity": "High", "status_id": 2, "status": "Failure",
     "message": "SQL injection blocked",
     "metadata": {"version": "1.7.0", "uid": "<record id>", "profiles": ["security_control"],
                  "product": {"name": "<product_name or the integration>", "vendor_name": "..."},
                  "log_provider": "siemgate", "log_name": "<integration>", "logged_time": <received, ms>},
     "is_alert": true, "disposition_id": 2, "disposition": "Blocked", "action_id": 2, "action": "Denied",
     "firewall_rule": {"name": "SQLi", "uid": "942100"},
     "attacks": [{"technique": {"uid": "T1190"}}],
     "src_endpoint": {"ip": "203.0.113.9"}, "dst_endpoint": {"hostname": "shop-frontend"},
     "http_request": {"http_method": "POST", "url": {"url_string": "https://shop.example/login?q=1",
                      "scheme": "https", "hostname": "shop.example", "path": "/login",
                      "query_string": "q=1"}},
     "unmapped": {...the vendor's event, untouched...}}

Choices:
- `severity_id` by the normalized `level`: critical 5, high 4, medium 3, low 2, unknown 0
  (Unknown, not an invented Informational).
- `disposition_id` from the vendor's action word (block/deny/prevent -> Blocked, drop ->
  Dropped, reject -> Rejected, allow/pass -> Allowed, log -> Logged, detect/monitor ->
  Detected, alert -> Alert, challenge, captcha, quarantine); another word is Other (99)
  with the word as `disposition`; no action is Unknown (0). `action_id`: Allowed, Denied,
  Other or Unknown likewise. `status_id` (HTTP Activity): Failure for a denied request,
  Success for an allowed one, else Unknown.
- `is_alert` is true for the vendor's events, false for its test and confirmation messages
  (which also carry the label `siemgate_kind:test` / `:confirmation` in `metadata.labels`).
- `src_endpoint.ip` only for a valid IP address of at most 40 characters (OCSF's `ip_t`);
  anything else stays only in `unmapped`. `http_request.url` has the parts that parse;
  `http_method` is one of OCSF's nine methods (another makes activity Other, 99, and stays
  only in `unmapped`).
- `time` is the event's own time (epoch ms); when that was no real instant, the receive
  time, with the vendor's text in `metadata.original_time`.
- `attacks` only from explicit MITRE ATT&CK ids in the vendor's event (top-level fields
  such as `mitre_technique`, `technique_id`, `mitre_tactic`; `T1190`, `T1059.007`, `TA0001`):
  none is guessed from a rule name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final, Literal

from siemgate.forwarders.formats.addresses import ip_text
from siemgate.forwarders.formats.urls import split_url
from siemgate.forwarders.normalize import NormalizedEvent
from siemgate.memo import remember

# The OCSF schema version the events follow (`metadata.version`); the tests validate every
# event against this version's classes (pydantic-ocsf ships them).
OCSF_VERSION: Final = "1.7.0"

OcsfClass = Literal["http_activity", "detection_finding"]


@dataclass(frozen=True, kw_only=True)
class OcsfSettings:
    """`ocsf:` of a sink whose format is ocsf."""

    # http_activity (4002) + the Security Control profile, or detection_finding (2004).
    event_class: OcsfClass = "http_activity"
    # metadata.product: the product that saw the event (e.g. name "AppSec WAF", vendor
    # "Acme"). Omitted name: the record's integration name; omitted vendor: not sent.
    product_name: str | None = None
    vendor_name: str | None = None


SEVERITY_ID: Final[Mapping[str, int]] = {"critical": 5, "high": 4, "medium": 3, "low": 2, "unknown": 0}
_SEVERITY_CAPTION: Final = {0: "Unknown", 1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}

# HTTP Activity's activity_id by request method; another method is Other (99).
_HTTP_ACTIVITY: Final[Mapping[str, int]] = {
    "CONNECT": 1, "DELETE": 2, "GET": 3, "HEAD": 4, "OPTIONS": 5, "POST": 6, "PUT": 7, "TRACE": 8, "PATCH": 9}
_HTTP_ACTIVITY_CAPTION: Final = {0: "Unknown", 1: "Connect", 2: "Delete", 3: "Get", 4: "Head", 5: "Options",
                                 6: "Post", 7: "Put", 8: "Trace", 9: "Patch", 99: "Other"}

# disposition_id by the vendor's action word (lower case).
_DISPOSITION: Final[Mapping[str, int]] = {
    **dict.fromkeys(("block", "blocked", "deny", "denied", "prevent", "prevented"), 2),
    **dict.fromkeys(("quarantine", "quarantined"), 3),
    **dict.fromkeys(("drop", "dropped"), 6),
    **dict.fromkeys(("reject", "rejected"), 25),
    **dict.fromkeys(("allow", "allowed", "pass", "passed", "permit", "permitted"), 1),
    **dict.fromkeys(("log", "logged"), 17),
    **dict.fromkeys(("detect", "detected", "monitor", "monitored"), 15),
    **dict.fromkeys(("alert", "alerted"), 19),
    **dict.fromkeys(("challenge", "challenged"), 23),
    "captcha": 22,
}
_HTTP_ACTIVITY_TYPE_NAME: Final = {uid: f"HTTP Activity: {caption}" for uid, caption in _HTTP_ACTIVITY_CAPTION.items()}
_DISPOSITION_CAPTION: Final = {0: "Unknown", 1: "Allowed", 2: "Blocked", 3: "Quarantined", 6: "Dropped",
                               15: "Detected", 17: "Logged", 19: "Alert", 22: "Captcha", 23: "Challenge",
                               25: "Rejected", 99: "Other"}
_DENYING: Final = frozenset({2, 3, 6, 25})
_ALLOWING: Final = frozenset({1})
_ACTION_CAPTION: Final = {0: "Unknown", 1: "Allowed", 2: "Denied", 99: "Other"}
_STATUS_CAPTION: Final = {0: "Unknown", 1: "Success", 2: "Failure"}

# Top-level fields of the vendor's event that may name MITRE ATT&CK ids (compared folded:
# lower case without `_`, `-`, `.`, spaces).
_TECHNIQUE_KEYS: Final = ("mitretechnique", "mitretechniqueid", "mitretechniques", "techniqueid",
                          "attacktechnique", "attacktechniqueid", "mitreattacktechnique")
_TACTIC_KEYS: Final = ("mitretactic", "mitretacticid", "mitretactics", "tacticid", "attacktactic",
                       "attacktacticid", "mitreattacktactic")
_TECHNIQUE: Final = re.compile(r"T\d{4}(?:\.\d{3})?")
_TACTIC: Final = re.compile(r"TA\d{4}")
_SEPARATORS: Final = str.maketrans("", "", "_-. ")
_MAX_ATTACKS: Final = 32




@lru_cache(maxsize=4096)
def url_object(url: str) -> dict[str, Any]:
    """OCSF `url` of a URL: `url_string` always, the parts that parse (cached and shared:
    not to be changed)."""
    fields: dict[str, Any] = {"url_string": url}
    parts = split_url(url)
    if parts is None:
        return fields
    if parts.scheme:
        fields["scheme"] = parts.scheme
    if parts.hostname:
        fields["hostname"] = parts.hostname
    if parts.port is not None:
        fields["port"] = parts.port
    if parts.path:
        fields["path"] = parts.path
    if parts.query:
        fields["query_string"] = parts.query
    return fields


def epoch_ms(timestamp: str) -> int | None:
    """RFC 3339 -> epoch milliseconds; None when it does not parse. A normalized timestamp
    (`2026-12-07T13:58:21.417123Z`: UTC, 6 fraction digits) is read by its fields, in integer
    arithmetic, its seconds' part cached (the events of a batch mostly share their seconds)."""
    if len(timestamp) == 27:
        tail = timestamp[19:]
        try:
            millis = _FRACTION_MS[tail]
        except KeyError:
            millis = _fraction_ms(tail)
        if millis is not None:
            prefix = timestamp[:19]
            try:
                seconds = _SECONDS[prefix]
            except KeyError:
                seconds = _ascii_epoch_seconds(prefix)
            if seconds is not None:
                return seconds * 1000 + millis
    return _epoch_ms(timestamp)


# `_epoch_seconds` of the ASCII seconds' parts seen (`YYYY-MM-DDTHH:MM:SS`; None for another),
# and `_fraction_ms` of the ends seen (`.123456Z`). The values come from the network: bounded,
# emptied when full.
_SECONDS: dict[str, int | None] = {}
_FRACTION_MS: dict[str, int | None] = {}


def _ascii_epoch_seconds(prefix: str) -> int | None:
    return remember(_SECONDS, prefix, _epoch_seconds(prefix) if prefix.isascii() else None)


def _fraction_ms(tail: str) -> int | None:
    """The whole milliseconds of a timestamp's last 8 characters when they are `.` + 6 ASCII
    digits + `Z` (else None)."""
    digits = tail[1:7]
    millis = (int(digits[:3]) if len(tail) == 8 and tail[0] == "." and tail[7] == "Z" and digits.isascii()
              and digits.isdigit() else None)
    return remember(_FRACTION_MS, tail, millis)


@lru_cache(maxsize=4096)
def _epoch_seconds(text: str) -> int | None:
    """`YYYY-MM-DDTHH:MM:SS` (UTC) -> epoch seconds; None when it is not that."""
    if len(text) != 19 or text[4] != "-" or text[10] != "T" or not text[:4].isdigit():
        return None
    try:
        moment = datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:
        return None
    delta = moment - _EPOCH
    return delta.days * 86400 + delta.seconds


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@lru_cache(maxsize=4096)
def _epoch_ms(timestamp: str) -> int | None:
    try:
        moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


# The last receive time read (the events of an ingest batch share it): (text, epoch ms).
_last_received: tuple[str, int | None] = ("", None)


def _received_ms(received_at: str) -> int | None:
    """`epoch_ms(received_at)`, the last one remembered."""
    global _last_received  # a one-entry cache, replaced whole (one tuple)
    text, ms = _last_received
    if text != received_at:
        ms = epoch_ms(received_at)
        _last_received = (received_at, ms)
    return ms


def _ids(values: object, pattern: re.Pattern[str]) -> list[str]:
    items = values if isinstance(values, list) else [values]
    found: list[str] = []
    for item in items:
        if isinstance(item, str):
            for match in pattern.finditer(item.upper()):
                if match[0] not in found:
                    found.append(match[0])
    return found[:_MAX_ATTACKS]


# Top-level key -> 1 (names techniques), 2 (tactics) or 0: an event shape's keys recur, and
# every key of every event is looked up (bounded: keys past the bound are folded each time).
# _ATTACK_KEYS: those of them that name ids, so that an event's keys are matched in one set
# operation (most events have none).
_KEY_KINDS: dict[object, int] = {}
_ATTACK_KEYS: set[object] = set()
_MAX_KEY_KINDS: Final = 4096


def _key_kind(key: object) -> int:
    kind = 0
    if isinstance(key, str):
        folded = key.translate(_SEPARATORS).lower()
        kind = 1 if folded in _TECHNIQUE_KEYS else 2 if folded in _TACTIC_KEYS else 0
    if len(_KEY_KINDS) < _MAX_KEY_KINDS:
        _KEY_KINDS[key] = kind
        if kind:
            _ATTACK_KEYS.add(key)
    return kind


# Per event shape (top-level key tuple): whether any of its keys names ATT&CK ids (a key's
# kind depends on the key alone). Bounded: past it, shapes are looked at key by key.
_SHAPES: dict[tuple[object, ...], bool] = {}
_MAX_SHAPES: Final = 1024


def _names_attacks(keys: tuple[object, ...]) -> bool:
    found = _SHAPES.get(keys)
    if found is None:
        kinds = _KEY_KINDS
        found = any((kinds[key] if key in kinds else _key_kind(key)) for key in keys)
        if len(_SHAPES) < _MAX_SHAPES:
            _SHAPES[keys] = found
    return found


def attacks(vendor: object) -> list[dict[str, Any]]:
    """OCSF `attacks` from explicit MITRE ATT&CK ids in the vendor's event's top-level fields."""
    if not isinstance(vendor, dict) or not _names_attacks(tuple(vendor)):
        return []
    techniques: list[str] = []
    tactics: list[str] = []
    kinds = _KEY_KINDS
    for key, value in vendor.items():
        kind = kinds.get(key)
        if kind is None:
            kind = _key_kind(key)
        if not kind:
            continue
        if kind == 1:
            techniques += (t for t in _ids(value, _TECHNIQUE) if t not in techniques)
        else:  # tactics
            tactics += (t for t in _ids(value, _TACTIC) if t not in tactics)
    found: list[dict[str, Any]] = []
    for uid in techniques[:_MAX_ATTACKS]:
        attack: dict[str, Any] = {"technique": {"uid": uid.split(".")[0]}}
        if "." in uid:
            attack["sub_technique"] = {"uid": uid}
        if len(tactics) == 1:
            attack["tactic"] = {"uid": tactics[0]}
        found.append(attack)
    if not techniques:
        found = [{"tactic": {"uid": uid}} for uid in tactics[:_MAX_ATTACKS]]
    return found


def _disposition(action: str | None) -> tuple[int, str]:
    if action is None or not action.strip():
        return 0, "Unknown"
    disposition_id = _DISPOSITION.get(action.strip().lower(), 99)
    return disposition_id, _DISPOSITION_CAPTION[disposition_id] if disposition_id != 99 else action


# What an event's action word and request method make of a record, remembered per text (they
# repeat from event to event). The values come from the network: bounded in number (emptied
# when full) and in length (a longer text is looked at each time).
_LONGEST_REMEMBERED: Final = 100
# action word (or None) -> disposition_id, disposition, action_id, action, HTTP Activity's
# status_id and status.
_Outcome = tuple[int, str, int, str, int, str]
_OUTCOMES: dict[str | None, _Outcome] = {}
# request method (or None) -> the method OCSF names (else None), and HTTP Activity's
# class-to-type_name fields (copied into each record).
_ACTIVITIES: dict[str | None, tuple[str | None, dict[str, Any]]] = {}
_FINDING_HEAD: Final[dict[str, Any]] = {
    "class_uid": 2004, "class_name": "Detection Finding",
    "category_uid": 2, "category_name": "Findings",
    "activity_id": 1, "activity_name": "Create",
    "type_uid": 200401, "type_name": "Detection Finding: Create",
}


def _outcome(action: str | None) -> _Outcome:
    try:
        return _OUTCOMES[action]
    except KeyError:
        pass
    disposition_id, disposition = _disposition(action)
    action_id = 2 if disposition_id in _DENYING else 1 if disposition_id in _ALLOWING else (
        0 if disposition_id == 0 else 99)
    status_id = 2 if action_id == 2 else 1 if action_id == 1 else 0
    outcome = (disposition_id, disposition, action_id, _ACTION_CAPTION[action_id] if action_id != 99 else disposition,
               status_id, _STATUS_CAPTION[status_id])
    return remember(_OUTCOMES, action, outcome) if action is None or len(action) <= _LONGEST_REMEMBERED else outcome


def _activity(raw_method: str | None) -> tuple[str | None, dict[str, Any]]:
    try:
        return _ACTIVITIES[raw_method]
    except KeyError:
        pass
    method = raw_method.strip().upper() if raw_method else ""
    activity_id = _HTTP_ACTIVITY.get(method, 99) if method else 0
    found = (method if method in _HTTP_ACTIVITY else None, {
        "class_uid": 4002, "class_name": "HTTP Activity",
        "category_uid": 4, "category_name": "Network Activity",
        "activity_id": activity_id, "activity_name": _HTTP_ACTIVITY_CAPTION[activity_id],
        "type_uid": 400200 + activity_id,
        "type_name": _HTTP_ACTIVITY_TYPE_NAME[activity_id],
    })
    return (remember(_ACTIVITIES, raw_method, found) if raw_method is None or len(raw_method) <= _LONGEST_REMEMBERED
            else found)


def ocsf_event(event: NormalizedEvent, settings: OcsfSettings | None = None, *,
               vendor_event: object = None) -> dict[str, Any]:
    """The OCSF record of a normalized event. `vendor_event`: what goes under `unmapped` in
    place of the decoded vendor event (an `orjson.Fragment` of the bytes as received)."""
    # Keys in OCSF's order of this module's docstring, each left out when it has no value;
    # what depends on the action word or the method alone is remembered (`_outcome`,
    # `_activity`): this runs for every event.
    settings = settings or _DEFAULTS
    detection = settings.event_class == "detection_finding"
    severity_id = SEVERITY_ID.get(event.level, 0)
    disposition_id, disposition, action_id, action, status_id, status = _outcome(event.action)
    time = epoch_ms(event.timestamp)
    received_at = event.received_at
    received = _received_ms(received_at) if received_at else None
    if time is None:
        time = received if received is not None else int(datetime.now(UTC).timestamp() * 1000)

    integration = event.integration
    product: dict[str, Any] = {"name": settings.product_name or integration or "unknown"}
    if settings.vendor_name:
        product["vendor_name"] = settings.vendor_name
    metadata: dict[str, Any] = {"version": OCSF_VERSION, "uid": event.id, "profiles": ["security_control"],
                                "product": product, "log_provider": "siemgate"}
    if integration:
        metadata["log_name"] = integration
    if received is not None:
        metadata["logged_time"] = received
    if event.timestamp_invalid is not None:
        metadata["original_time"] = event.timestamp_invalid
    kind = event.kind
    if kind != "event":
        metadata["labels"] = [f"siemgate_kind:{kind}"]

    source_ip = ip_text(event.source_ip)
    src: dict[str, Any] | None = {"ip": source_ip.address} if source_ip is not None else None
    asset = event.asset
    dst: dict[str, Any] | None = {"hostname": asset} if asset else None
    request: dict[str, Any] = {}
    method, head = _activity(event.method)
    if method is not None:  # OCSF's enum; another method only in `unmapped`
        request["http_method"] = method
    if event.url:
        request["url"] = url_object(event.url)
    vendor = event.event
    found_attacks = attacks(vendor)
    unmapped = vendor if vendor_event is None else vendor_event
    if not isinstance(vendor, dict):
        unmapped = {"value": unmapped}

    doc = (_FINDING_HEAD if detection else head).copy()
    doc["time"] = time
    doc["severity_id"] = severity_id
    doc["severity"] = _SEVERITY_CAPTION[severity_id]
    message = event.message
    if message is not None:
        doc["message"] = message
    doc["metadata"] = metadata
    doc["is_alert"] = kind == "event"
    doc["disposition_id"] = disposition_id
    doc["disposition"] = disposition
    doc["action_id"] = action_id
    doc["action"] = action
    if found_attacks:
        doc["attacks"] = found_attacks
    rule, rule_id = event.rule, event.rule_id
    if detection:
        doc["status_id"] = 1
        doc["status"] = "New"
        info: dict[str, Any] = {"uid": event.id, "title": rule or message or event.event_type or "siemgate event"}
        if message is not None:
            info["desc"] = message
        if rule is not None or rule_id is not None:
            analytic: dict[str, Any] = {"type_id": 1, "type": "Rule"}
            if rule is not None:
                analytic["name"] = rule
            if rule_id is not None:
                analytic["uid"] = rule_id
            info["analytic"] = analytic
        if found_attacks:
            info["attacks"] = found_attacks
        doc["finding_info"] = info
        evidence: dict[str, Any] = {}
        if src is not None:
            evidence["src_endpoint"] = src
        if dst is not None:
            evidence["dst_endpoint"] = dst
        if request:
            evidence["http_request"] = request
        if evidence:
            doc["evidences"] = [evidence]
    else:
        doc["status_id"] = status_id
        doc["status"] = status
        if rule is not None or rule_id is not None:
            firewall_rule: dict[str, Any] = {}
            if rule is not None:
                firewall_rule["name"] = rule
            if rule_id is not None:
                firewall_rule["uid"] = rule_id
            doc["firewall_rule"] = firewall_rule
        if src is not None:
            doc["src_endpoint"] = src
        if dst is not None:
            doc["dst_endpoint"] = dst
        if request:
            doc["http_request"] = request
    doc["unmapped"] = unmapped
    return doc


_DEFAULTS: Final = OcsfSettings()
