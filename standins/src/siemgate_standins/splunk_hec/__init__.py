"""A Splunk HTTP Event Collector stand-in that answers like HEC on the wire.

The sink's tests and benchmarks run against it; `tests/testing/test_splunk_hec_clients.py`
proves it against a published HEC client. Facts: docs/PROTOCOLS.md section 1.

    async with SplunkHecStandIn(tokens=[HecToken("tok", ack=True, indexes=("security",))]) as hec:
        ...send to hec.url + "/services/collector/event"...
        hec.faults.fail_requests(503, 9, count=2)      # the next two event requests: busy
        hec.faults.invalid_events(ids={"evt-3"})        # event.id == "evt-3": code 6 at its index
        hec.faults.lose_acks(1)                         # the next ackId never comes true (data lost)
        await hec.wait_for_events(10)
        hec.events(index="security"), hec.requests, hec.pending_acks

Or its own process: `python -m siemgate_standins.splunk_hec --port 8088 --token TOKEN[:ack]`
(prints its URL as its first line; SIGTERM/SIGINT stop it). Faults and inspection over HTTP:
`GET /_standin/state`, `POST /_standin/faults` (JSON, see `Faults.apply`), `POST /_standin/reset`.

Endpoints: POST /services/collector, /services/collector/event[/1.0] (JSON envelopes, one
after another, whitespace between), POST /services/collector/raw[/1.0] (lines are events,
metadata from the query string), GET|POST /services/collector/health[/1.0] (`?ack=true`),
POST /services/collector/ack. Answers and codes: the table of docs/PROTOCOLS.md 1.5 (`CODES`).

Choices where the reference leaves a gap (a real Splunk may differ; clients branch on the
HTTP status and `code`, never on `text`):
- A top-level JSON array is not an envelope: `400 {"text":"Invalid data format","code":6,
  "invalid-event-number":0}` (each value in the body must be an object).
- Per-event errors (6, 7, 12, 13, 15) carry `invalid-event-number`, the zero-based index of the
  first bad event. Events before it are indexed unless `index_before_invalid=False`. Except
  code 7: a real Splunk reports one more than the position (Splunk's SC4S docs show a single
  event with a disallowed index answered `"invalid-event-number":1`), so the stand-in adds
  `incorrect_index_number_offset` (default 1; 0 for zero-based like the others).
- `Content-Encoding` other than gzip (e.g. deflate) is not decoded, as Splunk supports gzip only:
  the body is taken as it is, so a deflated JSON body fails with code 6. A body labelled gzip
  that does not gunzip: 400 / code 6.
- A body over `max_body_bytes` is refused by the HTTP server with a bare 413 before it is read;
  one that gunzips to more than `max_decompressed_bytes`, and an injected 413, answer
  `413 {"text":"Request entity too large","code":6}` as several HEC emulators do.
- The channel must be a GUID in its 8-4-4-4-12 form (code 11); without ack it is optional.
- The health endpoint checks a token only when one is sent: unknown 400/21, disabled 400/22.
- Defaults when neither the envelope nor the query string sets them: host `splunk-standin`,
  source `http:standin`, sourcetype `httpevent`, the token's default index, arrival time.
- Unknown path: `404 {"text":"The requested URL was not found on this server.","code":404}`;
  a wrong method: 405 with the same shape.
- Acks: ackIds count from 0 per (token, channel); an ackId is true once its data is indexed,
  `ack_delay_seconds` after the request; `/ack` answers true once and then forgets the id. An
  ackId lost with `lose_acks` stays false forever and its events are never indexed. More than
  `max_pending_acks_per_channel` unanswered ackIds on a channel: 429 / code 27, nothing indexed.
- Injected faults (`fail_requests`, `drop_connections`, `delay_seconds`) apply to event and raw
  requests only, before authentication; `queue_full` answers events 503/9 (after
  authentication) and health 503/18; `ack_unavailable` turns health with `?ack=true` to 19/20.

Loopback test tooling, not a production server.
"""

from __future__ import annotations

from siemgate_standins.splunk_hec.cli import add_arguments, from_arguments, main, serve, token_spec
from siemgate_standins.splunk_hec.faults import Faults, InvalidEventRule
from siemgate_standins.splunk_hec.protocol import (
    ACK_PATH,
    CODES,
    DEFAULT_HOST,
    DEFAULT_SOURCE,
    DEFAULT_SOURCETYPE,
    EVENT_CODES,
    EVENT_PATHS,
    HEALTH_PATHS,
    RAW_PATHS,
    TOO_LARGE_TEXT,
    HecToken,
    answer,
    parse_envelopes,
)
from siemgate_standins.splunk_hec.server import RequestRecord, SplunkHecStandIn

__all__ = [
    "ACK_PATH",
    "CODES",
    "DEFAULT_HOST",
    "DEFAULT_SOURCE",
    "DEFAULT_SOURCETYPE",
    "EVENT_CODES",
    "EVENT_PATHS",
    "Faults",
    "HEALTH_PATHS",
    "HecToken",
    "InvalidEventRule",
    "RAW_PATHS",
    "RequestRecord",
    "SplunkHecStandIn",
    "TOO_LARGE_TEXT",
    "add_arguments",
    "answer",
    "from_arguments",
    "main",
    "parse_envelopes",
    "serve",
    "token_spec",
]
