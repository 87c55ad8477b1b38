"""`siemgate quarantine -c FILE list|show|replay`: the bodies the ingest answered 400/413 and kept.

`list` prints each kept body: its id, when it came, the integration, the answer and why.
`show ID` prints one body's description and the body itself, escaped (control characters
and bytes that are not UTF-8 written as escapes: vendor bytes never reach the terminal raw).
`replay ID` (alias `resend`) parses the kept body with today's parser (and today's config:
a raised `max_events_per_batch`, other `batch_keys`, or a siemgate that now takes what it
refused) and publishes its records through the configured bus, as the ingest would have:
same records, same keys, same topics. A body that still does not parse is refused, with the
reason; so is a body whose description does not record that its request passed
authentication. Replay is idempotent by event id: the keys of the records sent are noted in
the body's description, and a second replay sends none of them again (it says so and exits
1), unless `--again`. Confirmation links in it are recorded as the ingest records them
(`siemgate confirmations`), never requested.
"""

from __future__ import annotations

import asyncio
import time
from typing import TextIO

from siemgate.bus.open import open_bus
from siemgate.config import Config
from siemgate.errors import BusError, InvalidBatch, NotJson, TooManyEvents
from siemgate.ingest.batch import BatchParser
from siemgate.ingest.confirmation import MAX_LINK_CHARS, screen_links
from siemgate.ingest.confirmation_store import ConfirmationStore
from siemgate.ingest.quarantine import kept_bodies, kept_body, mark_resent
from siemgate.terminal import printable

_READY_SECONDS = 10.0


def list_quarantine(config: Config, out: TextIO) -> int:
    kept = kept_bodies(config.quarantine.path)
    if not kept:
        out.write(f"no quarantined bodies in {printable(config.quarantine.path)}\n")
        return 0
    for body in kept:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(body.received_at))
        resent = f"  resent {body.resent.get('at')}" if body.resent else ""
        out.write(f"{body.id}  {when}  {printable(body.integration)}  {body.status}  {body.bytes} bytes  "
                  f"from {printable(body.peer)}{resent}\n    {printable(body.reason)}\n")
    return 0


def show_quarantined(config: Config, ident: str, out: TextIO) -> int:
    """Print body `ident`'s description and the body itself, escaped (lines kept)."""
    found = kept_body(config.quarantine.path, ident)
    if found is None:
        out.write(f"no quarantined body {printable(ident)} in {printable(config.quarantine.path)} "
                  "(`siemgate quarantine list` shows them)\n")
        return 1
    kept, body = found
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(kept.received_at))
    out.write(f"id:            {kept.id}\n"
              f"received:      {when}\n"
              f"integration:   {printable(kept.integration)}\n"
              f"answer:        {kept.status}\n"
              f"reason:        {printable(kept.reason)}\n"
              f"from:          {printable(kept.peer)}\n"
              f"authenticated: {'yes' if kept.authenticated else 'not recorded (never replayed)'}\n"
              f"charset:       {printable(kept.charset) if kept.charset else 'none declared (or not recorded)'}\n"
              f"bytes:         {len(body)}\n")
    if kept.resent:
        out.write(f"replayed:      {printable(kept.resent.get('at'))} as {printable(kept.resent.get('integration'))}, "
                  f"{printable(kept.resent.get('events'))} events\n")
    out.write("--- body (UTF-8; other bytes as \\xNN, control characters escaped) ---\n")
    text = body.decode("utf-8", "backslashreplace")
    for line in text.split("\n"):
        out.write(printable(line) + "\n")
    return 0


async def replay(config: Config, ident: str, out: TextIO, *, integration: str | None = None,
                 again: bool = False, charset: str | None = None) -> int:
    """Send body `ident` on through the normal path: today's parser and config, published to the
    configured bus as the ingest would. Idempotent by event id: the records already sent for
    the integration (their keys are noted in the body's description) are not sent again
    unless `again`. `charset`: read a body that is not UTF-8 in it (default: the charset its
    request declared, when recorded). 0 once its records are published; 1, saying why, when
    nothing was sent."""
    found = kept_body(config.quarantine.path, ident)
    if found is None:
        out.write(f"no quarantined body {printable(ident)} in {printable(config.quarantine.path)} "
                  "(`siemgate quarantine list` shows them)\n")
        return 1
    kept, body = found
    if not kept.authenticated:
        out.write(f"not sent: {ident}'s description does not record that its request passed authentication; "
                  "siemgate never replays such a body\n")
        return 1
    # Kept by a siemgate that did not note the keys it sent: the whole body counts as sent.
    if kept.resent and kept.sent_keys is None and not again:
        out.write(f"{ident} was already sent on ({kept.resent.get('at')}, {kept.resent.get('events')} events); "
                  "pass --again to send it once more\n")
        return 1
    name = integration or kept.integration
    chosen = next((i for i in config.integrations if i.name == name), None)
    if chosen is None:
        names = ", ".join(i.name for i in config.integrations)
        out.write(f"integration {printable(name)} is not in the config (it has: {names}); pass --integration NAME\n")
        return 1
    parser = BatchParser(chosen, config.bus.topic_prefix, config.normalize.scheme_for(chosen.name))
    try:
        batch = parser.parse(body, peer=kept.peer, max_events=config.limits.max_events_per_batch,
                             charset=charset or kept.charset)
    except (NotJson, InvalidBatch, TooManyEvents) as exc:
        out.write(f"not sent: {ident} still is not a batch the ingest takes: {printable(str(exc))}\n")
        return 1
    records = batch.records
    if not again:
        sent = set((kept.sent_keys or {}).get(name, ()))
        records = [r for r in records if r.key.decode("utf-8", "surrogateescape") not in sent]
        if not records:
            at = kept.resent.get("at") if kept.resent else "?"
            out.write(f"{ident} was already sent on ({at}): each of its {len(batch.records)} events was sent for "
                      f"{printable(name)}, nothing new; pass --again to send it once more\n")
            return 1
    async with open_bus(config, role="tool") as opened:
        publisher = opened.bus.publisher()
        try:
            await publisher.start()
            deadline = asyncio.get_running_loop().time() + _READY_SECONDS
            while not await publisher.ready():
                if asyncio.get_running_loop().time() > deadline:
                    raise BusError("the bus does not accept writes")
                await asyncio.sleep(0.2)
            await publisher.publish(records)
        except BusError as exc:
            out.write(f"not sent: cannot publish to the bus: {printable(str(exc))}\n")
            return 1
        finally:
            await publisher.stop()
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    mark_resent(config.quarantine.path, ident, {"at": at, "integration": name, "batch": batch.id,
                                                 "events": len(records)},
                name, [r.key.decode("utf-8", "surrogateescape") for r in records])
    screen = screen_links(batch.confirmation_links)
    if screen.too_long:
        out.write(f"{len(screen.too_long)} confirmation link(s) longer than {MAX_LINK_CHARS:,} characters "
                  "not recorded\n")
    if screen.link is not None:
        store = ConfirmationStore(config.state_dir)
        await store.load()
        await store.record_link(name, screen.link, at)
        out.write("its confirmation link is recorded (the last of the body's, one per integration): "
                  "`siemgate confirmations`\n")
    skipped = len(batch.records) - len(records)
    already = f"; {skipped} sent before, not again" if skipped else ""
    out.write(f"sent {ident}: {len(records)} events published for {name} (batch {batch.id}){already}\n")
    return 0
