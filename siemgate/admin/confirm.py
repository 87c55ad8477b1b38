"""The page's Confirm button: request an integration's pending confirmation link.

The same request as `siemgate confirm` (siemgate.ingest.confirmation_cli): the link recorded
in `state_dir`, requested by `request_link` (siemgate.ingest.confirmation_fetch) with
`operator_approved=True` (the operator saw the link and clicked: the host allow-list is
lifted; https only, the private-address rule, pinned DNS, same-host redirects, the timeout
and the response cap all still apply), and the result recorded in the same store:
`record_failure` with the reason, or `mark_confirmed` with `via: admin`.

One more rule than the command: the form names the link the operator saw (`link_id`), and a
different current link (a newer one arrived since the page was drawn) is not requested.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import TYPE_CHECKING, Literal

from siemgate.admin.status import link_id
from siemgate.config import IntegrationConfig
from siemgate.errors import ConfirmationRefused, SiemgateError
from siemgate.ingest.confirmation_fetch import request_link

if TYPE_CHECKING:
    from siemgate.ingest.app import IngestContext

log = logging.getLogger("siemgate.admin")

Outcome = Literal["confirmed", "failed", "newer-link", "not-pending", "state-error"]


class Confirmer:
    """One confirmation at a time per integration: a second click waits, then finds it confirmed."""

    def __init__(self, context: IngestContext) -> None:
        self._context = context
        self._locks: dict[str, asyncio.Lock] = {}

    async def confirm(self, integration: IntegrationConfig, seen_link_id: str) -> Outcome:
        lock = self._locks.setdefault(integration.name, asyncio.Lock())
        async with lock:
            return await self._confirm(integration, seen_link_id)

    async def _confirm(self, integration: IntegrationConfig, seen_link_id: str) -> Outcome:
        name = integration.name
        store = self._context.store
        try:
            await store.load()
        except (OSError, SiemgateError) as exc:
            log.error(f"cannot read the confirmation state: {exc}. Fix state_dir", extra={"integration": name})
            return "state-error"
        entry = store.entry(name)
        if entry is None or entry.state != "pending":
            return "not-pending"
        if not hmac.compare_digest(seen_link_id.encode(), link_id(entry.url).encode()):
            return "newer-link"
        try:
            result = await request_link(entry.url, integration.confirmation, operator_approved=True)
        except ConfirmationRefused as exc:
            log.error(f"confirmation of integration {name} from the status page failed: {exc.reason}",
                      extra={"integration": name, "link": entry.url})
            try:
                await store.record_failure(name, entry.url, exc.reason)
            except (OSError, SiemgateError) as state_exc:
                log.error(f"could not save the confirmation state: {state_exc}. Fix state_dir",
                          extra={"integration": name})
                return "state-error"
            return "failed"
        try:
            marked = await store.mark_confirmed(name, entry.url, "admin")
        except (OSError, SiemgateError) as exc:
            log.error(f"the confirmation link of {name} was requested (HTTP {result.status}) but the state was not "
                      f"saved: {exc}. Fix state_dir", extra={"integration": name})
            return "state-error"
        if not marked:
            return "newer-link"
        self._context.metrics.set_integration_state(name, store.state(name))
        log.info("integration confirmed from the status page",
                 extra={"integration": name, "status": result.status, "link": entry.url})
        return "confirmed"
