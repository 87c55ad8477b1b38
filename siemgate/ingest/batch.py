"""From a request body to bus records: batch shapes (SPEC.md "HTTP") and the record contract.

Accepted: a JSON array of events; an object holding the array under one of the
integration's `batch_keys`; or a single object (the vendor's confirmation and test messages
come alone). Anything else is not a JSON batch.

The hot path never builds Python objects for a whole event. msgspec validates the body and
splits it into each event's raw JSON bytes, then decodes only the few fields the record
needs (id, severity, type); the raw bytes go into the record untouched. An event is parsed
completely only when `ControlPrefilter` says it might be a confirmation or test message,
or when it has no id (its id is then a hash of its canonical form).
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from siemgate.config import IntegrationConfig
from siemgate.ingest.confirmation import ControlPrefilter, classify, confirmation_link
from siemgate.record import BatchEncoder, Kind, Record, Severity, canonical_severity, event_id, loads


class NotJson(ValueError):
    """The body is not JSON (or not UTF-8)."""


class InvalidBatch(ValueError):
    """The body is JSON but not a batch of events."""


class TooManyEvents(ValueError):
    """More events than `limits.max_events_per_batch`."""


@dataclass(frozen=True, slots=True)
class Batch:
    id: str
    records: list[Record]
    # The link of every confirmation message in the batch, in order.
    confirmation_links: list[str]


_RawList = msgspec.json.Decoder(list[msgspec.Raw])
_RawObject = msgspec.json.Decoder(dict[str, msgspec.Raw])
_UNSET = msgspec.UNSET
_WHITESPACE = b" \t\r\n"


def _getter(attributes: list[str]) -> Callable[[object], tuple[object, ...]]:
    """The named attributes of an object, as a tuple (operator.attrgetter, always a tuple)."""
    if not attributes:
        return lambda _: ()
    getter = operator.attrgetter(*attributes)
    if len(attributes) == 1:
        return lambda value: (getter(value),)
    return getter


class BatchParser:
    """Parses one integration's bodies into records. Built once per integration."""

    def __init__(self, integration: IntegrationConfig, prefix: str) -> None:
        self.integration = integration
        self.prefix = prefix
        self.prefilter = ControlPrefilter(integration.confirmation)
        # One struct with every field the record needs, under safe attribute names; fields
        # absent from an event are UNSET (a JSON null is None: "present").
        confirmation = integration.confirmation
        names = list(dict.fromkeys((*integration.id_fields, *integration.severity_fields,
                                    *confirmation.type_fields, *confirmation.test_flags)))
        attributes = {name: f"f{i}" for i, name in enumerate(names)}
        header = msgspec.defstruct(
            "EventHeader",
            [(attributes[name], Any, _UNSET) for name in names],
            rename={attribute: name for name, attribute in attributes.items()},
        )
        self._header = msgspec.json.Decoder(header)
        self._id_fields = [attributes[n] for n in integration.id_fields]
        self._severity_fields = [attributes[n] for n in integration.severity_fields]
        self._type_values = _getter([attributes[n] for n in confirmation.type_fields])
        self._flag_values = _getter([attributes[n] for n in confirmation.test_flags])

    def split(self, body: bytes) -> Sequence[msgspec.Raw | bytes]:
        """Each event's raw JSON. Raises NotJson or InvalidBatch."""
        try:
            body.decode("utf-8")  # msgspec does not check strings it only skips
        except UnicodeDecodeError as exc:
            raise NotJson(f"the body is not UTF-8: {exc.reason} at byte {exc.start}") from None
        start = body.lstrip(_WHITESPACE)[:1]
        if not start:
            raise NotJson("the body is empty (expected a JSON array of events)")
        try:
            if start == b"[":
                return _RawList.decode(body)
            if start == b"{":
                document = _RawObject.decode(body)
                for key in self.integration.batch_keys:
                    inner = document.get(key)
                    if inner is not None and bytes(inner).lstrip(_WHITESPACE)[:1] == b"[":
                        return _RawList.decode(inner)
                return [body.strip(_WHITESPACE)]
            _RawList.decode(b"[" + body + b"]")  # is it JSON at all?
        except msgspec.DecodeError as exc:
            raise NotJson(f"the body is not JSON: {exc}") from None
        raise InvalidBatch(
            f"expected a JSON array of events or an object holding one under "
            f"{'/'.join(self.integration.batch_keys)}, got a JSON scalar"
        )

    def parse(self, body: bytes, *, peer: str, max_events: int) -> Batch:
        """Raises NotJson, InvalidBatch or TooManyEvents."""
        raws = self.split(body)
        if len(raws) > max_events:
            raise TooManyEvents(f"{len(raws)} events in one batch; the limit is {max_events}")
        integration = self.integration
        batch_id = uuid.uuid4().hex
        encoder = BatchEncoder(
            prefix=self.prefix,
            integration=integration.name,
            received_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            batch=batch_id,
            peer=peer,
        )
        records = []
        links = []
        byte_checks = self.prefilter.byte_checks_for(body)
        for seq, raw in enumerate(raws):
            data = bytes(raw)
            kind: Kind = "event"
            severity: Severity = "unknown"
            ident: str | None = None
            parsed: object = _UNSET
            if data[:1] == b"{":
                header = self._header.decode(data)
                ident = self._vendor_id(header)
                severity = self._severity(header)
                if self.prefilter.may_be_control(
                    data, self._type_values(header), self._flag_values(header), byte_checks
                ):
                    parsed = loads(data)
                    kind = classify(parsed, integration.confirmation)
                    if kind == "confirmation":
                        link = confirmation_link(parsed, integration.confirmation)
                        if link:
                            links.append(link)
            if ident is None:
                if parsed is _UNSET:
                    parsed = loads(data)
                ident = event_id(parsed, integration.name, ())
            records.append(encoder.encode(event_id=ident, kind=kind, severity=severity, seq=seq, event_bytes=data))
        return Batch(id=batch_id, records=records, confirmation_links=links)

    def _vendor_id(self, header: object) -> str | None:
        for field in self._id_fields:
            value = getattr(header, field)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, int) and not isinstance(value, bool):
                return str(value)
        return None

    def _severity(self, header: object) -> Severity:
        for field in self._severity_fields:
            value = getattr(header, field)
            if value is not _UNSET:
                return canonical_severity(value)
        return "unknown"
