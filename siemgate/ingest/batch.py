"""From a decoded body to bus records: batch shapes (SPEC.md "HTTP") and the record contract.

Accepted: a JSON array of events; an object holding the array under one of the
integration's `batch_keys`; or a single object (the vendor's confirmation and test messages
come alone). Anything else is not a JSON batch.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from siemgate.config import IntegrationConfig
from siemgate.ingest.confirmation import ControlPrefilter, classify, confirmation_link
from siemgate.record import BatchEncoder, Kind, Record, dumps, event_id, event_severity


class InvalidBatch(ValueError):
    """The body is JSON but not a batch of events."""


class TooManyEvents(ValueError):
    """More events than `limits.max_events_per_batch`."""


@dataclass(frozen=True, slots=True)
class Batch:
    id: str
    records: list[Record]
    # (link) of every confirmation message in the batch, in order.
    confirmation_links: list[str]


def events_of(document: object, integration: IntegrationConfig) -> list[object]:
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        for key in integration.batch_keys:
            value = document.get(key)
            if isinstance(value, list):
                return value
        return [document]
    raise InvalidBatch(
        f"expected a JSON array of events or an object holding one under "
        f"{'/'.join(integration.batch_keys)}, got {type(document).__name__}"
    )


def build_batch(
    document: object,
    *,
    integration: IntegrationConfig,
    prefix: str,
    peer: str,
    max_events: int,
    prefilter: ControlPrefilter | None = None,
) -> Batch:
    events = events_of(document, integration)
    if len(events) > max_events:
        raise TooManyEvents(f"{len(events)} events in one batch; the limit is {max_events}")
    batch_id = uuid.uuid4().hex
    received_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    confirmation = integration.confirmation
    prefilter = prefilter or ControlPrefilter(confirmation)
    encoder = BatchEncoder(
        prefix=prefix, integration=integration.name, received_at=received_at, batch=batch_id, peer=peer
    )
    records = []
    links = []
    for seq, event in enumerate(events):
        event_bytes = dumps(event)
        kind: Kind = "event"
        if prefilter.may_be_control(event, event_bytes):
            kind = classify(event, confirmation)
            if kind == "confirmation":
                link = confirmation_link(event, confirmation)
                if link:
                    links.append(link)
        records.append(
            encoder.encode(
                event_id=event_id(event, integration.name, integration.id_fields),
                kind=kind,
                severity=event_severity(event, integration.severity_fields),
                seq=seq,
                event_bytes=event_bytes,
            )
        )
    return Batch(id=batch_id, records=records, confirmation_links=links)
