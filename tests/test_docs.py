"""The README's config examples stay valid configs."""

from __future__ import annotations

import re
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
