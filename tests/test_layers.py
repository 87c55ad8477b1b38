"""The floor plan (docs/ARCHITECTURE.md): siemgate's layers import downward only, and no
siemgate module imports itself back through others.

    core  <  bus  <  ingest = forwarders  <  admin  <  root

Every module under siemgate/ is parsed with `ast`; every import counts, wherever it is
written (module level, inside a function, under `if TYPE_CHECKING:`), in both forms
(`import x`, `from x import y`, relative ones resolved). A module may import its own layer
and the layers below it; ingest and forwarders share a rank but must not import each other, and admin imports
neither (APART).
Any import cycle between siemgate modules fails, within a layer too. A module that is not
placed in a layer fails: a new top-level module must be placed in PLACES below.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

import siemgate

RANKS: Mapping[str, int] = {"core": 0, "bus": 1, "ingest": 2, "forwarders": 2, "admin": 3, "root": 4}
# Downward, yet not allowed: the two halves of the pipeline stay apart, and the status page
# reads them through the Protocols it declares (admin/sources.py), handed over by the root.
APART: frozenset[tuple[str, str]] = frozenset({
    ("ingest", "forwarders"), ("forwarders", "ingest"), ("admin", "ingest"), ("admin", "forwarders"),
})

# A module's layer: its own entry, else its package's (an entry "p.*" places the package p
# and every module under it). Top-level modules are placed one by one.
PLACES: Mapping[str, str] = {
    # core: the record contract, errors, the config (every schema type), and the utilities
    # every layer shares. Imports nothing above itself.
    "siemgate": "core",
    "siemgate.config": "core",
    "siemgate.config_loader": "core",
    "siemgate.sink_settings": "core",
    "siemgate.secrets": "core",
    "siemgate.record": "core",
    "siemgate.errors": "core",
    "siemgate.logs": "core",
    "siemgate.metrics": "core",
    "siemgate.gc_tuning": "core",
    "siemgate.foreground": "core",
    "siemgate.listeners": "core",
    "siemgate.reload": "core",
    "siemgate.terminal": "core",
    "siemgate.private_files": "core",
    "siemgate.watchdog": "core",
    "siemgate.diagnostics": "core",
    "siemgate.memo": "core",
    # the durable log: Kafka, the embedded log, the ingest's spool, open_bus.
    "siemgate.bus.*": "bus",
    # the webhook receiver, and the forwarders with their sinks.
    "siemgate.ingest.*": "ingest",
    "siemgate.forwarders.*": "forwarders",
    # the status page: declares the Protocols it reads (admin/sources.py).
    "siemgate.admin.*": "admin",
    # the composition root and the command-line front (and the commands that are tools).
    "siemgate.serve": "root",
    "siemgate.cli": "root",
    "siemgate.__main__": "root",
    "siemgate.check": "root",
    "siemgate.simulate": "root",
}


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    path: Path
    line: int

    def where(self) -> str:
        return f"{self.path}:{self.line}"


def modules(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package rooted at `root` (a directory named `package`), by dotted name."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join([package, *parts])] = path
    return found


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports(module: str, path: Path, known: Mapping[str, Path], package: str) -> Iterator[Edge]:
    """Every import of a module of `package` that `module` makes, anywhere in its file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, path, node)
            # `from pkg import sub` imports the module pkg.sub; `from pkg import name`, pkg.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for target in targets:
            if target != package and not target.startswith(package + "."):
                continue
            # `import a.b.c` of a name that is not a module: the nearest enclosing module.
            while target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target != module:
                yield Edge(module, target, path, node.lineno)


def layer_of(module: str, places: Mapping[str, str]) -> str | None:
    if module in places:
        return places[module]
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        found = places.get(".".join(parts[:end]) + ".*")
        if found is not None:
            return found
    return None


def _cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def problems(root: Path, package: str, places: Mapping[str, str]) -> list[str]:
    """Every breach of the floor plan in the package at `root`, one line each, naming file and line."""
    known = modules(root, package)
    out = []
    for module, path in known.items():
        if layer_of(module, places) is None:
            out.append(f"{path}: module {module} is not placed in a layer (add it to tests/test_layers.py PLACES)")
    edges = sorted({edge for module, path in known.items() for edge in imports(module, path, known, package)},
                   key=lambda e: (str(e.path), e.line, e.target))
    for edge in edges:
        source, target = layer_of(edge.source, places), layer_of(edge.target, places)
        if source is None or target is None:
            continue
        if RANKS[target] > RANKS[source]:
            out.append(f"{edge.where()}: {edge.source} ({source}) imports {edge.target} ({target}): an upward import")
        elif (source, target) in APART:
            out.append(f"{edge.where()}: {edge.source} ({source}) imports {edge.target} ({target}): "
                       f"{source} must not import {target}")
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
    for cycle in _cycles(graph):
        members = set(cycle)
        links = [e for e in edges if e.source in members and e.target in members]
        out.append("import cycle between " + ", ".join(cycle) + ": "
                   + "; ".join(f"{e.where()} {e.source} -> {e.target}" for e in links))
    return out


def test_siemgate_imports_only_downward_and_has_no_cycle() -> None:
    root = Path(siemgate.__file__).parent
    found = problems(root, "siemgate", PLACES)
    assert not found, "\n".join(found)


def test_every_layer_holds_a_module() -> None:
    """The placement table is not stale: each entry matches a module."""
    known = modules(Path(siemgate.__file__).parent, "siemgate")
    for entry in PLACES:
        if entry.endswith(".*"):
            assert any(m.startswith(entry[:-1]) for m in known), entry
        else:
            assert entry in known, entry


# -- the checker itself, on a package written for the test


def _write(root: Path, files: Mapping[str, str]) -> Path:
    package = root / "pkg"
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return package


_PLACES = {"pkg": "core", "pkg.config": "core", "pkg.bus.*": "bus", "pkg.ingest.*": "ingest",
           "pkg.forwarders.*": "forwarders", "pkg.admin.*": "admin", "pkg.serve": "root",
           "pkg.cli": "root"}
_CLEAN = {
    "__init__.py": "",
    "config.py": "import os\n",
    "bus/__init__.py": "",
    "bus/base.py": "from pkg.config import x\n",
    "bus/leaf.py": "",
    "ingest/__init__.py": "",
    "ingest/app.py": "from pkg.bus import base\nfrom ..config import y\n",
    "forwarders/__init__.py": "",
    "forwarders/service.py": "import pkg.bus.base\n",
    "admin/__init__.py": "",
    "admin/status.py": "from pkg import config\n",
    "serve.py": "from pkg.admin import status\nfrom pkg.ingest.app import create_app\n"
                "from pkg.forwarders import service\n",
    "cli.py": "",
}


def test_a_clean_package_passes(tmp_path: Path) -> None:
    assert problems(_write(tmp_path, _CLEAN), "pkg", _PLACES) == []


@pytest.mark.parametrize(("name", "text", "line", "message"), [
    # module level, `from x import y`
    ("config.py", "from pkg.bus.leaf import Bus\n", 1,
     "pkg.config (core) imports pkg.bus.leaf (bus): an upward import"),
    # inside a function, `import x`
    ("bus/base.py", "def f():\n    import pkg.admin.status\n", 2,
     "pkg.bus.base (bus) imports pkg.admin.status (admin): an upward import"),
    # under TYPE_CHECKING, relative
    ("ingest/app.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..admin import status\n", 3,
     "pkg.ingest.app (ingest) imports pkg.admin.status (admin): an upward import"),
    # sideways between ingest and forwarders
    ("forwarders/service.py", "from pkg.ingest.app import create_app\n", 1,
     "pkg.forwarders.service (forwarders) imports pkg.ingest.app (ingest): forwarders must not import ingest"),
    # downward, but the status page reads the forwarders through its own Protocols
    ("admin/status.py", "from pkg.forwarders.service import ForwardService\n", 1,
     "pkg.admin.status (admin) imports pkg.forwarders.service (forwarders): admin must not import forwarders"),
    # into the root, lazily
    ("admin/status.py", "async def f():\n    from pkg import cli\n", 2,
     "pkg.admin.status (admin) imports pkg.cli (root): an upward import"),
])
def test_an_upward_import_fails_naming_file_and_line(tmp_path: Path, name: str, text: str, line: int,
                                                     message: str) -> None:
    package = _write(tmp_path, {**_CLEAN, name: text})
    assert problems(package, "pkg", _PLACES) == [f"{package / name}:{line}: {message}"]


def test_a_cycle_fails_even_within_a_layer_and_through_a_lazy_import(tmp_path: Path) -> None:
    package = _write(tmp_path, {
        **_CLEAN,
        "bus/base.py": "from pkg.bus.kafka import Kafka\n",
        "bus/kafka.py": "def open():\n    from pkg.bus import base\n",
    })
    found = problems(package, "pkg", _PLACES)
    assert len(found) == 1, found
    assert found[0].startswith("import cycle between pkg.bus.base, pkg.bus.kafka: ")
    assert f"{package / 'bus' / 'base.py'}:1 pkg.bus.base -> pkg.bus.kafka" in found[0]
    assert f"{package / 'bus' / 'kafka.py'}:2 pkg.bus.kafka -> pkg.bus.base" in found[0]


def test_an_unplaced_module_fails(tmp_path: Path) -> None:
    package = _write(tmp_path, {**_CLEAN, "newthing.py": "from pkg import config\n"})
    found = problems(package, "pkg", _PLACES)
    assert found == [f"{package / 'newthing.py'}: module pkg.newthing is not placed in a layer "
                     "(add it to tests/test_layers.py PLACES)"]
