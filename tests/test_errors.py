"""One exception tree: siemgate/errors.py draws every exception class of siemgate/ (outside
siemgate/testing, the protocol stand-ins), each under its parent, and each derives from
SiemgateError."""

from __future__ import annotations

import ast
import builtins
import importlib
import re
from pathlib import Path
from typing import NamedTuple

import siemgate.errors
from siemgate.errors import SiemgateError

PACKAGE = Path(siemgate.errors.__file__).resolve().parent
ROOT = PACKAGE.parent
_BUILTIN_EXCEPTIONS = {name for name, value in vars(builtins).items()
                       if isinstance(value, type) and issubclass(value, BaseException)}


class Drawn(NamedTuple):
    parent: str | None
    module: str | None  # a file path, for a class drawn outside errors.py


def drawn_tree() -> dict[str, Drawn]:
    """The tree in errors.py's docstring: name -> where it is drawn. A line in parentheses
    groups classes under its parent without being a class itself."""
    doc = siemgate.errors.__doc__ or ""
    tree: dict[str, Drawn] = {}
    stack: list[tuple[int, str | None]] = []  # (depth, the name children of that depth hang from)
    root_column: int | None = None
    for line in doc.splitlines():
        stripped = line.lstrip(" │├└─")
        column = len(line) - len(stripped)
        match = re.match(r"(\(.*?\)|\w+)(.*)$", stripped)
        if root_column is None:
            if stripped.startswith("SiemgateError"):
                root_column = column
                tree["SiemgateError"] = Drawn(None, None)
                stack.append((0, "SiemgateError"))
            continue
        if not match or "── " not in line:
            if stripped.strip():
                break  # the tree ends at the first line that is not a branch
            continue
        depth = (column - root_column) // 4
        name, rest = match.group(1), match.group(2)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parent = stack[-1][1] if stack else None
        if name.startswith("("):
            stack.append((depth, parent))  # a group: its members hang from the group's parent
            continue
        module = re.search(r"(siemgate/\S+\.py)", rest)
        tree[name] = Drawn(parent, module.group(1) if module else None)
        stack.append((depth, name))
    return tree


def exception_classes() -> dict[str, str]:
    """Every exception class defined under siemgate/ (not siemgate/testing): name -> file."""
    classes: list[tuple[str, str, list[str]]] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith("siemgate/testing/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), relative)):
            if isinstance(node, ast.ClassDef):
                classes.append((node.name, relative, [ast.unparse(base).rsplit(".", 1)[-1] for base in node.bases]))
    found: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        for name, relative, bases in classes:
            if (name, relative) not in found.items() and any(b in _BUILTIN_EXCEPTIONS or b in found for b in bases):
                assert name not in found, f"two exception classes named {name}: {found[name]}, {relative}"
                found[name] = relative
                changed = True
    return found


def test_the_tree_is_parsed() -> None:
    tree = drawn_tree()
    assert tree["SiemgateError"] == Drawn(None, None)
    assert tree["SpoolFull"] == Drawn("SpoolError", None)
    assert tree["_Abandoned"] == Drawn("SiemgateError", "siemgate/forwarders/runtime.py")
    assert tree["AdminListenError"] == Drawn("SiemgateError", None)
    assert len(tree) >= 30


def test_every_exception_is_drawn_in_errors_py_and_derives_from_siemgate_error() -> None:
    tree = drawn_tree()
    found = exception_classes()
    problems = []
    for name, relative in sorted(found.items()):
        drawn = tree.get(name)
        if drawn is None:
            problems.append(f"{relative}: {name} is not drawn in siemgate/errors.py's tree (define it there)")
            continue
        if relative != "siemgate/errors.py" and drawn.module != relative:
            problems.append(f"{relative}: {name} is defined outside siemgate/errors.py; move it there, or draw "
                            f"it with its module ({relative}) if it must stay")
        module = importlib.import_module(relative.removesuffix(".py").replace("/", "."))
        cls = getattr(module, name)
        if not issubclass(cls, SiemgateError):
            problems.append(f"{relative}: {name} does not derive from SiemgateError")
        elif drawn.parent is not None and drawn.parent not in {base.__name__ for base in cls.__bases__}:
            problems.append(f"{relative}: {name} is drawn under {drawn.parent}, but derives from "
                            f"{', '.join(base.__name__ for base in cls.__bases__)}")
    stale = sorted(set(tree) - set(found))
    problems += [f"siemgate/errors.py draws {name}, which no module defines" for name in stale]
    assert not problems, "\n".join(problems)
