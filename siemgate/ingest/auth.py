"""Webhook authentication: one header, several accepted values (so keys rotate without a
401, which would disable the integration), compared in constant time."""

from __future__ import annotations

import hmac

from siemgate.config import AuthConfig


def authenticated(presented: str | None, auth: AuthConfig) -> bool:
    if presented is None:
        return False
    given = presented.encode()
    ok = False
    # Compare with every value, without stopping at a match: the time taken does not tell
    # which value (or how much of one) matched.
    for value in auth.values:
        ok |= hmac.compare_digest(given, value.reveal().encode())
    return ok
