"""`filter_path`, as Elasticsearch applies it to a JSON answer."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

_MISSING: Final = object()
_States = tuple[tuple[int, int], ...]  # filter_path: (path, position in it) pairs


# filter_path


class FilterPath:
    """Elasticsearch's `filter_path` as a generic JSON filter.

    `expression` is the comma list of the query parameter (or a sequence of paths). A path is
    dot-separated field names; `*` in a name matches any characters, a `**` name any number of
    levels (zero included); arrays are traversed without consuming a name. With inclusive paths
    only the matching fields (and the objects leading to them) are kept: objects and arrays
    left empty are dropped, and nothing matching gives `{}`. A path starting with `-` removes
    what it matches (its parents stay). Exclusions apply first, then inclusions.

    Fast on repetitive JSON (a bulk response): the set of partial matches at a level is an
    interned integer, and what to do with an object is planned once per (state, key tuple).
    """

    _ANY_DEPTH: Final = "**"
    _KEEP: Final = -1  # in a plan: the key completes a path (include: keep it whole; exclude: drop it)

    def __init__(self, expression: str | Sequence[str]) -> None:
        paths = expression.split(",") if isinstance(expression, str) else list(expression)
        includes: list[tuple[str | re.Pattern[str], ...]] = []
        excludes: list[tuple[str | re.Pattern[str], ...]] = []
        for raw in paths:
            path = raw.strip()
            target = excludes if path.startswith("-") else includes
            path = path.lstrip("-")
            if path:
                target.append(tuple(self._segment(name) for name in path.split(".")))
        self._patterns = {True: tuple(includes), False: tuple(excludes)}
        # State sets (tuples of (path, position)) interned as ints; 0 is the empty set.
        self._sets: list[_States] = [()]
        self._ids: dict[tuple[bool, _States], int] = {}
        self._plans: dict[tuple[bool, int, tuple[str, ...]], tuple[tuple[str, int], ...]] = {}
        self._starts = {inclusive: self._start(inclusive, len(ps))
                        for inclusive, ps in self._patterns.items()}

    def _start(self, inclusive: bool, paths: int) -> int:
        return self._intern(inclusive, self._closure(inclusive, {(i, 0) for i in range(paths)})[1])

    @classmethod
    def _segment(cls, name: str) -> str | re.Pattern[str]:
        if name == cls._ANY_DEPTH or "*" not in name:
            return name
        return re.compile(".*".join(re.escape(part) for part in name.split("*")), re.DOTALL)

    def apply(self, value: Any) -> Any:
        """The filtered value (a new object; `value` is not modified)."""
        if self._patterns[False]:
            value = self._exclude(value, self._starts[False])
        if self._patterns[True]:
            kept = self._include(value, self._starts[True])
            return {} if kept is _MISSING else kept
        return value

    def _intern(self, inclusive: bool, states: _States) -> int:
        if not states:
            return 0
        key = (inclusive, states)
        found = self._ids.get(key)
        if found is None:
            found = self._ids[key] = len(self._sets)
            self._sets.append(states)
        return found

    def _closure(self, inclusive: bool, states: set[tuple[int, int]]) -> tuple[bool, _States]:
        """Add the states a `**` reaches by matching zero levels; True when a path is complete."""
        patterns = self._patterns[inclusive]
        complete = False
        todo = list(states)
        out: set[tuple[int, int]] = set()
        while todo:
            i, pos = todo.pop()
            segments = patterns[i]
            if pos == len(segments):
                complete = True
                continue
            if (i, pos) in out:
                continue
            out.add((i, pos))
            if segments[pos] == self._ANY_DEPTH:
                todo.append((i, pos + 1))
        return complete, tuple(sorted(out))

    def _step(self, inclusive: bool, state: int, key: str) -> int:
        """`_KEEP` when `key` completes a path, else the state for its children (0: nothing left)."""
        patterns = self._patterns[inclusive]
        reached: set[tuple[int, int]] = set()
        for i, pos in self._sets[state]:
            segment = patterns[i][pos]
            if segment == self._ANY_DEPTH:
                reached.add((i, pos))  # `**` takes this level and stays
            elif segment == key if isinstance(segment, str) else segment.fullmatch(key):
                reached.add((i, pos + 1))
        complete, following = self._closure(inclusive, reached)
        return self._KEEP if complete else self._intern(inclusive, following)

    def _plan(self, inclusive: bool, state: int, keys: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
        cache_key = (inclusive, state, keys)
        plan = self._plans.get(cache_key)
        if plan is None:
            steps = ((key, self._step(inclusive, state, key)) for key in keys)
            # include: only the keys that matter; exclude: every key, in order (0: keep as is)
            plan = tuple(step for step in steps if step[1] != 0 or not inclusive)
            if len(self._plans) > 20_000:
                self._plans.clear()
            self._plans[cache_key] = plan
        return plan

    def _include(self, value: Any, state: int) -> Any:
        kind = type(value)
        if kind is dict:
            out: dict[str, Any] = {}
            for key, following in self._plan(True, state, tuple(value)):
                child = value[key]
                if following == self._KEEP:
                    out[key] = child
                elif type(child) is dict or type(child) is list:
                    kept = self._include(child, following)
                    if kept is not _MISSING:
                        out[key] = kept
            return out if out else _MISSING
        if kind is list:
            items = []
            for child in value:
                if type(child) is dict or type(child) is list:
                    kept = self._include(child, state)
                    if kept is not _MISSING:
                        items.append(kept)
            return items if items else _MISSING
        return _MISSING

    def _exclude(self, value: Any, state: int) -> Any:
        kind = type(value)
        if kind is dict:
            out: dict[str, Any] = {}
            for key, following in self._plan(False, state, tuple(value)):
                child = value[key]
                if following == self._KEEP:
                    continue
                if following and (type(child) is dict or type(child) is list):
                    out[key] = self._exclude(child, following)
                else:
                    out[key] = child
            return out
        if kind is list:
            return [self._exclude(child, state) if type(child) is dict or type(child) is list else child
                    for child in value]
        return value
