"""Bounded memos of answers about values that come from the network (addresses, action words,
timestamps' parts): they repeat from event to event, but their number is the sender's choice.

The lookups stay plain dict lookups at each call site (they run for every event); `remember`
is the one way an answer is stored: a memo that holds `limit` entries is emptied first.
"""

from __future__ import annotations

from typing import Final, TypeVar

K = TypeVar("K")
V = TypeVar("V")

MEMO_LIMIT: Final = 4096


def remember(memo: dict[K, V], key: K, value: V, limit: int = MEMO_LIMIT) -> V:
    """Store `value` under `key` (emptying `memo` first when it is full); returns `value`."""
    if len(memo) >= limit:
        memo.clear()
    memo[key] = value
    return value
