"""`admin:` in the config: validation, secrecy, and a restart to change it."""

from __future__ import annotations

import pytest

from siemgate.config import parse_config
from siemgate.errors import ConfigError
from siemgate.reload import keep_running_values, restart_needed

TOKEN = "admin-token-0123456789"


def config(admin: str, listen: str = "{host: 127.0.0.1, port: 8080}") -> str:
    return f"listen: {listen}\nadmin: {admin}\n"


def parse(admin: str, **kwargs: str) -> object:
    return parse_config(config(admin, **kwargs), {"ADMIN_TOKEN": TOKEN, "SHORT": "short"})


def test_off_unless_configured() -> None:
    assert parse_config("listen: {port: 8080}\n", {}).admin is None


def test_defaults_and_token_from_the_environment() -> None:
    loaded = parse_config('admin: {token: "${ADMIN_TOKEN}"}\n', {"ADMIN_TOKEN": TOKEN})
    assert loaded.admin is not None
    assert (loaded.admin.host, loaded.admin.port) == ("127.0.0.1", 9180)
    assert loaded.admin.token.reveal() == TOKEN
    assert TOKEN not in repr(loaded)


@pytest.mark.parametrize(
    ("admin", "complaint"),
    [
        ("{port: 9180}", "admin.token: is required"),
        ('{token: "${SHORT}"}', "admin.token: must be at least 16 characters"),
        ('{token: ""}', "admin.token: must be at least 16 characters"),
        ('{token: "${UNSET}"}', "admin.token: environment variable UNSET is not set"),
        ('{host: "not a host", token: "${ADMIN_TOKEN}"}', "admin.host:"),
        ('{port: 70000, token: "${ADMIN_TOKEN}"}', "admin.port: must be between 0 and 65535"),
        ('{port: 8080, token: "${ADMIN_TOKEN}"}', "admin.port: 8080 is the webhook port"),
        ('{port: 9108, token: "${ADMIN_TOKEN}"}', "admin.port: 9108 is forward.listen.port"),
        ('{token: "${ADMIN_TOKEN}", tls: true}', "admin.tls: unknown key"),
    ],
    ids=["no-token", "short-token", "empty-token", "unset-var", "bad-host", "bad-port", "webhook-port",
         "forward-port", "unknown-key"],
)
def test_invalid_admin_sections_are_refused(admin: str, complaint: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(admin)
    assert complaint in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_hosts_and_ports() -> None:
    for host in ("0.0.0.0", "::", "::1", "localhost", "admin.siemgate.svc.cluster.local"):
        loaded = parse_config(f'admin: {{host: "{host}", port: 9999, token: "{TOKEN}"}}\n', {})
        assert loaded.admin is not None and loaded.admin.host == host


def test_admin_changes_need_a_restart() -> None:
    old = parse_config(f'admin: {{port: 9180, token: "{TOKEN}"}}\n', {})
    new = parse_config(f'admin: {{port: 9181, token: "{TOKEN}-rotated"}}\nlog_level: debug\n', {})
    assert restart_needed(old, new) == ["admin"]
    applied = keep_running_values(old, new)
    assert applied.admin == old.admin and applied.log_level == "debug"
    assert restart_needed(old, parse_config("{}\n", {})) == ["admin"]
    assert restart_needed(old, old) == []
