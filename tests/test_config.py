"""The config file: expansion, strictness, one-line errors, secrets that never print."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

import orjson
import pytest

from siemgate import logs
from siemgate.config import load_config, parse_config
from siemgate.errors import ConfigError
from siemgate.secrets import Secret

MINIMAL = """
integrations:
  - name: appsec-prod
    auth: {header: X-Api-Key, values: ["${APPSEC_KEY}", "${APPSEC_KEY_NEXT:-}"]}
"""


def error_of(text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, {"APPSEC_KEY": "k3y-value-1", **(environ or {})})
    message = str(caught.value)
    assert "\n" not in message, "errors are one line"
    return message


def test_spec_example_parses_with_defaults() -> None:
    spec = Path(__file__).parent.parent / "deploy" / "examples" / "spec-example.yaml"
    config = load_config(spec, {"APPSEC_KEY": "a-key-123", "HEC_TOKEN": "hec-token-1", "ES_API_KEY": "es-key-12"})
    integration = config.integration("appsec-prod")
    assert integration.path == "/webhook/appsec-prod"
    assert [v.reveal() for v in integration.auth.values] == ["a-key-123"]  # the empty NEXT value is dropped
    assert config.limits.max_body_bytes == 33554432
    assert config.bus.kafka is not None and config.bus.kafka.servers == ("kafka:9092",)
    assert [s.name for s in config.sinks] == ["splunk", "elastic", "soc", "archive"]
    assert isinstance(config.sinks[0].settings.token, Secret)
    assert isinstance(config.sinks[1].settings.api_key, Secret)


def test_environment_expansion_and_defaults() -> None:
    text = """
listen: {host: "${HOST:-127.0.0.1}", port: "${PORT}"}
bus: {type: kafka, kafka: {bootstrap_servers: "${BROKERS}", idempotence: "${IDEMP:-false}"}}
""" + MINIMAL
    config = parse_config(text, {"PORT": "9000", "BROKERS": "k1:9092, k2:9092", "APPSEC_KEY": "x-key"})
    assert config.listen.host == "127.0.0.1"
    assert config.listen.port == 9000
    assert config.bus.kafka is not None
    assert config.bus.kafka.servers == ("k1:9092", "k2:9092")
    assert config.bus.kafka.idempotence is False
    literal = parse_config('state_dir: "/tmp/$${NOT_A_VAR}"', {})
    assert literal.state_dir == "/tmp/${NOT_A_VAR}"


def test_optional_fields_expand_once() -> None:
    """`${VAR}` is expanded once in optional fields too: `$$` stays an escape, and a secret whose
    value holds `${...}` is taken as it is, never expanded a second time."""
    text = """
sinks:
  - {name: es, type: elasticsearch, url: "http://127.0.0.1:9200", username: "$${LITERAL}", password: "${ES_PASSWORD}"}
""" + MINIMAL
    config = parse_config(text, {"APPSEC_KEY": "x-key", "ES_PASSWORD": "pa${APPSEC_KEY}ss$$", "LITERAL": "expanded"})
    settings = config.sinks[0].settings
    assert settings.username == "${LITERAL}"  # type: ignore[attr-defined]
    assert settings.password.reveal() == "pa${APPSEC_KEY}ss$$"  # type: ignore[attr-defined]


def test_unset_variable_names_the_variable_and_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(MINIMAL, {})
    message = str(caught.value)
    assert message.startswith("integrations[0].auth.values[0]: environment variable APPSEC_KEY is not set")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("listen: {hots: 1.2.3.4}", "listen.hots: unknown key (known keys here: head_timeout_seconds, host, "
                                    "idle_timeout_seconds, max_connections, port, tls, trusted_proxies)"),
        ("bogus: 1", "bogus: unknown key"),
        ("listen: {port: eighty}", "listen.port: must be an integer, not 'eighty'"),
        ("listen: {port: 70000}", "listen.port: must be between 0 and 65535"),
        ("limits: {max_body_bytes: [1]}", "limits.max_body_bytes: must be an integer, not a list"),
        ("bus: {type: rabbit}", "bus.type: must be one of 'embedded', 'kafka', not 'rabbit'"),
        ("bus: {type: kafka}", "bus.kafka: is required when bus.type is kafka"),
        ("integrations: [{name: Bad_Name, auth: {header: X-K, values: [a]}}]", "integrations[0].name: 'Bad_Name'"),
        ("integrations: [{name: a}]", "integrations[0].auth: is required"),
        ("integrations: [{name: a, auth: {header: X-K, values: ['']}}]",
         "integrations[0].auth.values: needs at least one non-empty secret"),
        ("integrations: [{name: a, auth: {header: 'X K', values: [v]}}]", "integrations[0].auth.header"),
        ("integrations: [{name: a, auth: {header: X-K, values: [v]}, allowed_cidrs: [10.0.0.300/8]}]",
         "integrations[0].allowed_cidrs[0]: '10.0.0.300/8' is not a CIDR"),
        ("integrations: [{name: a, auth: {header: X-K, values: [v]}, confirmation: {mode: always}}]",
         "integrations[0].confirmation.mode: must be one of 'manual', 'auto'"),
        ("integrations: [{name: a, auth: {header: X-K, values: [v]}}, {name: a, auth: {header: X-K, values: [v]}}]",
         "integrations[1].name: 'a' is used twice"),
        ("sinks: [{name: s, type: kafka}]", "sinks[0].type: must be one of splunk_hec, elasticsearch, syslog, file"),
        ("sinks: [{type: file}]", "sinks[0].name: is required"),
        ("sinks: [{name: a, type: file, path: x}, {name: a, type: file, path: y}]", "sinks[1].name: 'a' is used twice"),
        ("sinks: [{name: a, type: file}]", "sinks[0].path: is required"),
        ("sinks: [{name: a, type: file, path: x, rotate_bytes: 5}]", "sinks[0].rotate_bytes: must be at least 1024"),
        ("sinks: [{name: a, type: file, path: x, colour: red}]", "sinks[0].colour: unknown key"),
        ("normalize: {fields: {colour: [a]}}", "normalize.fields.colour: is not a normalized field"),
        ("listen: [1, 2]", "listen: must be a mapping, not a list"),
        ("- just\n- a list", "the config must be a YAML mapping"),
        ("listen: {port: 1\nbus: x", "line 2, column"),
        ("bus: {type: kafka, kafka: {bootstrap_servers: '', idempotence: false}}",
         "bus.kafka.bootstrap_servers: needs at least one host:port"),
    ],
)
def test_errors_are_one_line_with_the_key_path(text: str, expected: str) -> None:
    assert expected in error_of(text)


def test_load_config_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "siemgate.yaml"
    path.write_text("listen: {port: x}\n")
    with pytest.raises(ConfigError, match=r"siemgate\.yaml: listen\.port: must be an integer"):
        load_config(path, {})
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.yaml", {})


def test_secrets_never_print(caplog: pytest.LogCaptureFixture) -> None:
    text = MINIMAL + """
bus:
  type: kafka
  kafka:
    bootstrap_servers: k:9092
    security: {protocol: SASL_SSL, username: svc, password: "${KAFKA_PASSWORD}"}
sinks:
  - {name: splunk, type: splunk_hec, url: "https://splunk:8088", token: "${HEC_TOKEN}"}
"""
    env = {"APPSEC_KEY": "webhook-key-s3cr3t", "KAFKA_PASSWORD": "kafka-pw-s3cr3t", "HEC_TOKEN": "hec-tok-s3cr3t"}
    config = parse_config(text, env)
    shown = repr(config) + str(config)
    for value in env.values():
        assert value not in shown
    assert "***" in shown
    # An error message about a secret's key carries no value.
    with pytest.raises(ConfigError) as caught:
        parse_config(MINIMAL.replace("X-Api-Key", "X Api"), env)
    assert "webhook-key-s3cr3t" not in str(caught.value)
    # A log line that happens to contain a secret (an exception text, a URL) is scrubbed.
    handler_stream = logs.JsonFormatter()
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "connect failed: %s", ("token=hec-tok-s3cr3t",), None)
    record.detail = "password kafka-pw-s3cr3t"
    line = handler_stream.format(record)
    assert "hec-tok-s3cr3t" not in line and "kafka-pw-s3cr3t" not in line
    assert line.count("***") == 2


def test_secret_type() -> None:
    secret = Secret("abcdef")
    assert repr(secret) == "Secret('***')"
    assert str(secret) == "***"
    assert f"{secret}" == "***"
    assert secret.reveal() == "abcdef"
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(secret)


def test_networks_and_trusted_proxies() -> None:
    config = parse_config(
        "listen: {trusted_proxies: [10.0.0.0/8, 'fd00::/8']}\n" + MINIMAL.replace(
            "auth:", "allowed_cidrs: [203.0.113.0/24, 198.51.100.7]\n    auth:"),
        {"APPSEC_KEY": "key-1234"},
    )
    assert config.listen.trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))
    assert config.integrations[0].allowed_cidrs[1] == ipaddress.ip_network("198.51.100.7/32")


def test_secret_files_are_read_with_one_trailing_newline_stripped(tmp_path: Path) -> None:
    key = tmp_path / "APPSEC_KEY"
    key.write_text("k3y-from-a-file\n\n")
    token = tmp_path / "HEC_TOKEN"
    token.write_bytes(b"hec-token-0001\r\n")
    text = f"""
integrations:
  - name: appsec-prod
    auth: {{header: X-Api-Key, values: ["${{file:{key}}}", "${{file:{tmp_path}/NEXT:-}}"]}}
sinks:
  - {{name: splunk, type: splunk_hec, url: "https://splunk:8088", token: "${{file:{token}}}"}}
state_dir: "${{file:{tmp_path}/STATE_DIR:-/tmp/state}}"
"""
    config = parse_config(text, {})
    # Only the last newline goes: a secret that ends in a newline keeps the others.
    assert [v.reveal() for v in config.integration("appsec-prod").auth.values] == ["k3y-from-a-file\n"]
    assert config.sinks[0].settings.token.reveal() == "hec-token-0001"
    assert config.state_dir == "/tmp/state"  # missing file, default given
    (tmp_path / "STATE_DIR").write_text("")
    assert parse_config(text, {}).state_dir == "/tmp/state"  # empty file, default given


def test_unreadable_secret_file_names_the_key_and_the_path_never_the_content(tmp_path: Path) -> None:
    missing = tmp_path / "secrets" / "HEC_TOKEN"
    text = f"""
sinks:
  - {{name: splunk, type: splunk_hec, url: "https://splunk:8088", token: "${{file:{missing}}}"}}
"""
    message = error_of(text)
    assert message.startswith(f"sinks[0].token: secret file {missing} cannot be read (No such file or directory)")
    # A file that is there but not readable by siemgate (a directory here: the same error path).
    missing.parent.mkdir()
    missing.mkdir()
    assert str(missing) in error_of(text)
    # A file that is not text: named, its bytes never shown.
    missing.rmdir()
    missing.write_bytes(b"\xff\xfesecret-bytes")
    message = error_of(text)
    assert "not UTF-8" in message and "secret-bytes" not in message
    assert "must be absolute" in error_of(text.replace(str(missing), "relative/HEC_TOKEN"))


# --- metrics: /metrics on a listener of its own -------------------------------------------------


def test_metrics_listener_is_off_unless_configured_and_has_defaults() -> None:
    assert parse_config("listen: {port: 8080}\n", {}).metrics is None
    loaded = parse_config("metrics: {}\n", {})
    assert loaded.metrics is not None and (loaded.metrics.host, loaded.metrics.port) == ("0.0.0.0", 9109)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("listen: {port: 8080}\nmetrics: {port: 8080}\n", "metrics.port: 8080 is the webhook port"),
        ('metrics: {port: 9180}\nadmin: {port: 9180, token: "admin-token-0123456789"}\n',
         "metrics.port: 9180 is admin.port"),
        ("metrics: {port: 70000}\n", "metrics.port: must be between 0 and 65535"),
        ('metrics: {host: "not a host"}\n', "metrics.host:"),
        ("metrics: {path: /m}\n", "metrics.path: unknown key"),
    ],
    ids=["webhook-port", "admin-port", "bad-port", "bad-host", "unknown-key"],
)
def test_invalid_metrics_listeners_are_refused(text: str, complaint: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, {})
    assert complaint in str(caught.value)


def test_metrics_listener_changes_need_a_restart() -> None:
    from siemgate.reload import keep_running_values, restart_needed

    old = parse_config("metrics: {port: 9109}\n", {})
    new = parse_config("metrics: {port: 9110}\nlog_level: debug\n", {})
    assert restart_needed(old, new) == ["metrics"]
    applied = keep_running_values(old, new)
    assert applied.metrics == old.metrics and applied.log_level == "debug"


# --- what operators get wrong (the admin sweep) -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("listne: {port: 8080}\n", "listne: unknown key (known keys here: admin, "),
        ("limits: {max_body_byte: 2048}\n", "limits.max_body_byte: unknown key"),
        ("sinks: [{name: a, type: file, paht: /tmp/x}]\n", "sinks[0].paht: unknown key"),
    ],
)
def test_a_misspelt_key_is_refused_with_the_key_it_resembles(text: str, expected: str) -> None:
    message = error_of(text + MINIMAL)
    assert expected in message
    suggestion = {"listne": "listen", "limits.max_body_byte": "max_body_bytes", "sinks[0].paht": "path"}
    key = message.split(":")[0]
    assert message.endswith(f"; did you mean {suggestion[key]}?")
    assert "did you mean" not in error_of("zzzzzz: 1\n" + MINIMAL)  # nothing alike: no guess


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("listen: {port: 8080}\nlisten: {port: 9090}\n" + MINIMAL, "line 2, column 1: found key 'listen' twice"),
        (MINIMAL.replace("auth:", "auth: {header: X-K, values: [other-key]}\n    auth:"),
         "line 5, column 5: found key 'auth' twice"),
        (MINIMAL + "sinks:\n  - {name: a, type: file, path: /x, path: /y}\n", "found key 'path' twice"),
    ],
    ids=["top", "integration", "sink"],
)
def test_a_key_written_twice_is_refused_not_the_last_one_taken(text: str, expected: str) -> None:
    assert expected in error_of(text)


def test_a_merge_key_may_still_be_overridden() -> None:
    text = "x-defaults: &d {port: 8080, host: 127.0.0.1}\n"
    with pytest.raises(ConfigError, match="x-defaults: unknown key"):  # anchors live under real keys
        parse_config(text, {})
    config = parse_config("listen: {<<: {port: 8080, host: 127.0.0.1}, port: 9090}\n" + MINIMAL,
                          {"APPSEC_KEY": "k3y-value-1"})
    assert (config.listen.host, config.listen.port) == ("127.0.0.1", 9090)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "~\n"])
def test_an_empty_config_is_refused(text: str) -> None:
    """A reload reads an in-place edit's truncated file as this: all integrations and sinks gone."""
    assert error_of(text).startswith("the config is empty")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("limits: {body_timeout_seconds: .nan}\n", "limits.body_timeout_seconds: must be a finite number, not nan"),
        ("limits: {body_timeout_seconds: .inf}\n", "limits.body_timeout_seconds: must be a finite number, not inf"),
        ("bus: {spool: {ack_deadline_seconds: 'NaN'}}\n", "bus.spool.ack_deadline_seconds: must be a finite number"),
        ("sinks: [{name: a, type: file, path: /x, retry: {max_seconds: -.inf}}]\n",
         "sinks[0].retry.max_seconds: must be a finite number"),
        ("forward: {drain_timeout_seconds: -1}\n", "forward.drain_timeout_seconds: must be 0 or more, not -1"),
        ("forward: {lag_interval_seconds: 0}\n", "forward.lag_interval_seconds: must be positive"),
        ("forward: {fetch_max_wait_ms: -5}\n", "forward.fetch_max_wait_ms: must be 0 or more"),
        ("forward: {listen: {port: 70000}}\n", "forward.listen.port: must be between 0 and 65535, not 70000"),
        ("forward: {listen: {host: 'not a host'}}\n", "forward.listen.host: 'not a host' is not"),
    ],
)
def test_numbers_no_check_could_judge_and_negative_durations_are_refused(text: str, expected: str) -> None:
    assert expected in error_of(text + MINIMAL)


def test_a_config_nested_past_the_recursion_limit_is_a_config_error() -> None:
    assert error_of("state_dir: " + "[" * 5000 + "]" * 5000 + "\n").startswith("the YAML is nested too deeply")


def test_a_tab_in_the_indentation_is_refused_saying_so() -> None:
    message = error_of("listen:\n\tport: 8080\n" + MINIMAL)
    assert message.startswith("line 2, column 1: found character '\\t'")
    assert message.endswith("(YAML indents with spaces only: replace the tab)")


def test_a_bom_and_windows_line_endings_are_read() -> None:
    text = ("\ufeff" + "listen: {port: 9090}\n" + MINIMAL).replace("\n", "\r\n")
    config = parse_config(text, {"APPSEC_KEY": "k3y-value-1"})
    assert config.listen.port == 9090
    assert [v.reveal() for v in config.integrations[0].auth.values] == ["k3y-value-1"]


@pytest.mark.parametrize("path", ["/webhook/{name}", "/webhook/{rest:path}", "/webhook/%61", "/webhook\\a",
                                  "/webhook/a\tb", "/webhook/\x1b[2J"])
def test_an_integration_path_is_literal(path: str) -> None:
    """`{x}` in a path would be a route parameter: it would take another integration's requests
    (answered 401 with the wrong key: the sender disables that integration)."""
    quoted = orjson.dumps(path).decode()
    text = MINIMAL + f"  - name: other\n    path: {quoted}\n    auth: {{header: X-K, values: [abcd]}}\n"
    message = error_of(text)
    assert message.startswith("integrations[1].path: ") and "without {}, %" in message


def test_an_error_shows_the_variable_never_the_value_it_expanded_to(tmp_path: Path) -> None:
    """A secret written under the wrong key (a password in a URL, a token as a port) must not
    reach the log through the error that refuses it: the error names the `${...}` instead."""
    password = tmp_path / "password"
    password.write_text("s3cr3t-from-a-file\n")
    environ = {"PASS": "s3cr3t-pass-xyz", "LONG": "a-long-secret-value-" * 4}
    cases = {
        "listen: {port: '${PASS}'}\n": "listen.port: must be an integer, not '${PASS}'",
        "listen: {port: '${LONG}'}\n": "listen.port: must be an integer, not '${LONG}'",  # never 37 characters of it
        "listen: {trusted_proxies: ['${PASS}']}\n": "'${PASS}' is not a CIDR",
        "sinks: [{name: s, type: splunk_hec, url: 'htp://u:${PASS}@h:8088', token: t0k3n-abcdef}]\n":
            "sinks[0].url: must be http(s)://host[:port], not 'htp://u:${PASS}@h:8088'",
        f"sinks: [{{name: s, type: splunk_hec, url: 'htp://u:${{file:{password}}}@h', token: t0k3n-abcdef}}]\n":
            f"not 'htp://u:${{file:{password}}}@h'",
    }
    for text, expected in cases.items():
        message = error_of(text + MINIMAL, environ)
        assert expected in message
        assert "s3cr3t" not in message and "a-long-secret" not in message


def test_a_file_far_larger_than_a_config_is_refused_unread(tmp_path: Path) -> None:
    """`-c data/out/events.ndjson` by mistake: refused, not read whole into memory."""
    path = tmp_path / "events.ndjson"
    with path.open("wb") as handle:
        handle.truncate(17 * 1024 * 1024)  # sparse; a log would be gigabytes
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert str(caught.value) == f"{path}: cannot read: larger than 16 MiB: not a siemgate config (check -c FILE)"
