"""The README's config examples stay valid configs."""

from __future__ import annotations

import re
import tokenize
from pathlib import Path

import pytest

from siemgate.config import load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent
ENV = {"APPSEC_KEY": "key-1234", "KAFKA_PASSWORD": "pw-12345", "HEC_TOKEN": "tok-1234", "ES_API_KEY": "es-12345",
       "AZURE_TENANT_ID": "tenant-1234", "AZURE_CLIENT_ID": "client-1234", "AZURE_CLIENT_SECRET": "secret-1234"}


def yaml_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```yaml\n(.*?)```", text, re.S)


@pytest.mark.parametrize("block", yaml_blocks(), ids=lambda b: b.strip().splitlines()[0][:40])
def test_readme_config_examples_parse(block: str) -> None:
    parse_config(block, ENV)


@pytest.mark.parametrize("path", sorted((ROOT / "deploy" / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_example_configs_parse(path: Path) -> None:
    load_config(path, ENV)


def test_spec_config_example_parses() -> None:
    """docs/SPEC.md's config example is a valid config."""
    (block,) = re.findall(r"```yaml\n(.*?)```", (ROOT / "docs/SPEC.md").read_text(), re.S)
    parse_config(block, ENV)


# A document named in code: a path ending in .md (a URL is not a document of the repository).
_MD_NAME = re.compile(r"(?<![\w/.-])([\w./-]*\w\.md)\b")
_URL = re.compile(r"\w+://\S+")
_OWN_TREES = ("siemgate", "standins", "tests", "bench", "tools")


def _md_names(path: Path) -> list[tuple[int, str]]:
    """The .md names in a Python file's comments and strings (docstrings included)."""
    names = []
    with path.open("rb") as source:
        for token in tokenize.tokenize(source.readline):
            if token.type in (tokenize.COMMENT, tokenize.STRING):
                for match in _MD_NAME.finditer(_URL.sub("", token.string)):
                    names.append((token.start[0], match.group(1)))
    return names


def test_documents_named_in_code_exist() -> None:
    """Every docstring or comment that names a document names one this repository has, by its
    path from the repository's root (e.g. `docs/SPEC.md, "HTTP"`)."""
    missing = []
    for tree in _OWN_TREES:
        for path in sorted((ROOT / tree).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            missing += [f"{relative}:{line}: {name}" for line, name in _md_names(path)
                        if not (ROOT / name).is_file()]
    assert not missing, "documents that are not in the repository (name them by their path):\n" + "\n".join(missing)


def test_links_between_documents_resolve() -> None:
    """Relative links in README.md and docs/*.md point at files that exist."""
    broken = []
    for document in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", document.read_text()):
            if "://" not in target and not (document.parent / target).exists():
                broken.append(f"{document.relative_to(ROOT)}: {target}")
    assert not broken, "\n".join(broken)
