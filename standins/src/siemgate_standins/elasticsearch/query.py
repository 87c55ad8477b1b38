"""The query DSL the stand-in's `_search` and `_count` understand: `match_all`, `term`, `terms`,
`ids`, `bool`."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

import orjson

from siemgate_standins.elasticsearch.protocol import EsError, _text
from siemgate_standins.elasticsearch.state import _Index

# Queries

Matcher = Callable[[_Index, str, tuple[int, int, bytes | None]], bool]
_WORD_RE: Final = re.compile(r"\w+")


def _compile_query(query: Any) -> Matcher:
    if not isinstance(query, dict) or len(query) != 1:
        raise EsError(400, "parsing_exception", "query malformed, must start with start_object",
                      extra={"line": 1, "col": 1})
    ((kind, spec),) = query.items()
    if kind == "match_all":
        return lambda index, doc_id, entry: True
    if kind == "match_none":
        return lambda index, doc_id, entry: False
    if kind == "ids":
        values = set(map(str, spec.get("values", []))) if isinstance(spec, dict) else set()
        return lambda index, doc_id, entry: doc_id in values
    if kind in ("term", "terms"):
        if not isinstance(spec, dict):
            raise EsError(400, "parsing_exception", f"[{kind}] query malformed, no start_object after query name",
                          extra={"line": 1, "col": 1})
        fields = [(k, v) for k, v in spec.items() if k != "boost"]
        if len(fields) != 1:
            raise EsError(400, "parsing_exception", f"[{kind}] query doesn't support multiple fields",
                          extra={"line": 1, "col": 1})
        ((name, wanted),) = fields
        insensitive = False
        if kind == "term":
            if isinstance(wanted, dict):
                insensitive = bool(wanted.get("case_insensitive"))
                wanted = wanted.get("value")
            candidates = [wanted]
        else:
            if not isinstance(wanted, list):
                raise EsError(400, "parsing_exception", "[terms] query does not support [" + name + "]",
                              extra={"line": 1, "col": 1})
            candidates = wanted
        return _term_matcher(name, candidates, insensitive)
    if kind == "bool":
        if not isinstance(spec, dict):
            raise EsError(400, "parsing_exception", "[bool] query malformed", extra={"line": 1, "col": 1})

        def clauses(key: str) -> list[Matcher]:
            value = spec.get(key, [])
            return [_compile_query(q) for q in (value if isinstance(value, list) else [value])]

        must = clauses("must") + clauses("filter")
        should = clauses("should")
        must_not = clauses("must_not")
        minimum = int(spec.get("minimum_should_match", 0 if must else 1 if should else 0))

        def match(index: _Index, doc_id: str, entry: tuple[int, int, bytes | None]) -> bool:
            return (all(m(index, doc_id, entry) for m in must)
                    and not any(m(index, doc_id, entry) for m in must_not)
                    and sum(1 for m in should if m(index, doc_id, entry)) >= minimum)

        return match
    raise EsError(400, "parsing_exception", f"unknown query [{kind}]", extra={"line": 1, "col": 1})


def _values_at(doc: Any, path: str) -> list[Any]:
    """Every value at a dotted path (nested objects, dotted keys and arrays)."""
    if isinstance(doc, list):
        return [value for element in doc for value in _values_at(element, path)]
    if not isinstance(doc, dict):
        return []
    out: list[Any] = []
    if path in doc:
        value = doc[path]
        out.extend(value if isinstance(value, list) else [value])
    position = path.find(".")
    while position != -1:
        head = path[:position]
        if head in doc:
            out.extend(_values_at(doc[head], path[position + 1:]))
        position = path.find(".", position + 1)
    return out


def _term_matcher(name: str, candidates: list[Any], insensitive: bool) -> Matcher:
    def match(index: _Index, doc_id: str, entry: tuple[int, int, bytes | None]) -> bool:
        if entry[2] is None:
            return False
        doc = orjson.loads(entry[2])
        field = name
        leaf = index.mapping.leaf(field) if index.mapping is not None else None
        exact = leaf is not None and leaf.type not in ("text", "match_only_text")
        if leaf is None and field.endswith(".keyword"):
            field, exact = field[: -len(".keyword")], True
        for value in _values_at(doc, field):
            for wanted in candidates:
                if _term_equal(value, wanted, exact, insensitive):
                    return True
        return False

    return match


def _term_equal(value: Any, wanted: Any, exact: bool, insensitive: bool) -> bool:
    if isinstance(value, bool) or isinstance(wanted, bool):
        return _text(value) == _text(wanted)
    if isinstance(value, int | float):
        try:
            return float(value) == float(wanted)
        except (TypeError, ValueError):
            return False
    if isinstance(value, str):
        expected = _text(wanted)
        if not exact:  # an analysed (text) field: the term must be one of its tokens
            return expected in {token.lower() for token in _WORD_RE.findall(value)}
        if insensitive:
            return value.lower() == expected.lower()
        return value == expected
    return False
