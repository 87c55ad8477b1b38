"""`siemgate confirmations` and `siemgate confirm`: show confirmation links and request one.

Both read the state that the ingest records in `<state_dir>/confirmations.json`, so they
must run with the same config (and the same state_dir) as the ingest. Exit codes: 0 done,
1 nothing to do or the request failed (the reason is one line), 2 unknown integration.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from siemgate.config import Config
from siemgate.errors import ConfigError, ConfirmationRefused, ConfirmationStateError
from siemgate.ingest.confirmation_fetch import request_link
from siemgate.ingest.confirmation_store import ConfirmationEntry, ConfirmationStore
from siemgate.terminal import printable

_HEADER = ("INTEGRATION", "STATE", "LINK", "RECEIVED", "LAST ERROR")


def list_confirmations(config: Config, out: TextIO) -> int:
    """Print one row per integration: configured ones first, then any only found in the state."""
    store = ConfirmationStore(config.state_dir)
    try:
        store.load_sync()
    except ConfirmationStateError as exc:
        print(f"error: {printable(exc)}", file=out)
        return 1
    recorded = {entry.integration: entry for entry in store.entries()}
    configured = [integration.name for integration in config.integrations]
    rows = [_row(name, recorded.get(name)) for name in configured]
    rows += [_row(f"{name} (not configured)", recorded[name]) for name in sorted(recorded) if name not in configured]
    if not rows:
        print("no integrations are configured and no confirmation link was received", file=out)
        return 0
    _print_table([_HEADER, *rows], out)
    return 0


async def confirm(config: Config, integration: str, out: TextIO) -> int:
    """Request the pending confirmation link of `integration`, as the operator running the command.

    The host allow-list does not apply (the operator chose this link); the private-address
    rule and every other check of `request_link` still do."""
    try:
        settings = config.integration(integration).confirmation
    except ConfigError as exc:
        print(f"error: {exc.reason}", file=out)
        return 2
    store = ConfirmationStore(config.state_dir)
    try:
        await store.load()
    except ConfirmationStateError as exc:
        print(f"error: {printable(exc)}", file=out)
        return 1
    entry = store.entry(integration)
    if entry is None:
        print(f"error: no confirmation link has been received for {integration}", file=out)
        return 1
    if entry.state != "pending":
        print(
            f"error: nothing pending: {integration} was confirmed at {entry.confirmed_at or '?'} "
            f"(via {entry.confirmed_via or '?'})",
            file=out,
        )
        return 1
    try:
        result = await request_link(entry.url, settings, operator_approved=True)
    except ConfirmationRefused as exc:
        try:
            await store.record_failure(integration, entry.url, exc.reason)
        except ConfirmationStateError as state_exc:
            print(f"warning: {printable(state_exc)}", file=out)
        print(f"error: confirmation of {integration} failed: {printable(exc.reason)}", file=out)
        return 1
    try:
        marked = await store.mark_confirmed(integration, entry.url, "cli")
    except ConfirmationStateError as exc:
        print(f"error: the link was requested (HTTP {result.status}) but the state was not saved: {printable(exc)}",
              file=out)
        return 1
    if not marked:
        print(
            f"error: the link was requested (HTTP {result.status}) but a newer link arrived meanwhile; "
            f"run `siemgate confirm` again",
            file=out,
        )
        return 1
    print(
        f"confirmed {integration}: {printable(entry.url)} answered HTTP {result.status} "
        f"({result.bytes_read} bytes read, final URL {printable(result.final_url)})",
        file=out,
    )
    return 0


def _row(name: str, entry: ConfirmationEntry | None) -> tuple[str, ...]:
    if entry is None:
        return (name, "no link yet", "-", "-", "-")
    state = entry.state if entry.state == "pending" else f"confirmed ({entry.confirmed_via or '?'})"
    return (printable(name), printable(state), printable(entry.url), printable(entry.received_at),
            _one_line(entry.last_error) or "-")


def _one_line(text: str | None) -> str | None:
    # Blanks (newlines included) folded, then every other control character escaped.
    return printable(" ".join(text.split())) if text else None


def _print_table(rows: Sequence[tuple[str, ...]], out: TextIO) -> None:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        # The last column is not padded: no trailing blanks.
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths[:-1], strict=True)]
        print("  ".join([*cells, row[-1]]), file=out)
