"""siemgate's configuration: the YAML file of docs/SPEC.md, as frozen dataclasses.

`load_config(path)` reads, expands `${VAR}`, validates everything and returns a `Config`,
or raises one `ConfigError` whose message is a single line naming the key path.

Layer: core, a leaf. It owns every schema type (normalization's included; the sinks' base
settings are in `siemgate.sink_settings`) and imports nothing from bus, ingest, forwarders
or admin: a sink entry is validated with its type's settings class found through the plugin
table of `siemgate.sink_settings` (dotted names, resolved with importlib).
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from siemgate.config_loader import build, expansions_hidden
from siemgate.errors import ConfigError
from siemgate.record import (
    BUILTIN_SCALES,
    DEFAULT_SEVERITY_MAX,
    LEVELS,
    Level,
    SeverityScale,
    SeverityScheme,
    word_key,
)
from siemgate.secrets import Secret
from siemgate.sink_settings import SINK_TYPES, SinkSettings, build_settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_TOPIC_PREFIX = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


# The normalized fields a sink can use (siemgate.forwarders.normalize.NormalizedEvent), and
# where each is looked for in the vendor's event, in order (dotted paths, first match wins).
# After the generic spellings, those of the common WAF vendors' own logs (after the generic
# ones, so an event that has both keeps the generic one): AWS WAF (`httpRequest.*`,
# `terminatingRuleId`), Cloudflare (`Datetime`, `ClientRequestURI`, `ClientRequestMethod`; its
# `ClientIP`, `RuleID`, `Action` fold to generic ones), F5 ASM (`ip_client`, `date_time`, which
# folds to `datetime`, `request_status`), ModSecurity's JSON audit log (`transaction.*`), Azure
# Front Door / Application Gateway (`properties.*`), Akamai (`httpMessage.*`,
# `attackData.clientIP`), Signal Sciences (`remoteIP`, which folds to `remote_ip`).
DEFAULT_FIELDS: Mapping[str, tuple[str, ...]] = {
    "timestamp": ("timestamp", "@timestamp", "time", "eventTime", "event_time", "date", "created_at", "createdAt",
                  "datetime", "httpMessage.start"),
    "source_ip": ("source_ip", "sourceIp", "src_ip", "srcIp", "client_ip", "clientIp", "ip", "source.ip",
                  "source.address", "client.ip", "request.client_ip", "request.clientIp", "request.ip",
                  "httpRequest.clientIp", "ip_client", "transaction.client_ip", "properties.clientIp",
                  "properties.clientIP", "attackData.clientIP", "remote_ip"),
    "url": ("url", "uri", "request.url", "request.uri", "http.url", "url.full",
            "httpRequest.uri", "ClientRequestURI", "transaction.request.uri", "properties.requestUri",
            "httpMessage.path"),
    "method": ("method", "http_method", "httpMethod", "request.method", "http.method", "http.request.method",
               "httpRequest.httpMethod", "ClientRequestMethod", "transaction.request.method",
               "properties.httpMethod", "httpMessage.method"),
    "rule": ("rule_name", "ruleName", "rule.name", "rule", "signature", "policy", "policyName",
             "properties.ruleName"),
    "rule_id": ("rule_id", "ruleId", "rule.id", "signature_id", "signatureId", "terminatingRuleId"),
    "action": ("action", "outcome", "decision", "disposition", "result", "request_status", "properties.action"),
    "asset": ("asset", "asset.name", "asset.host", "host", "hostname", "application.name", "application", "app",
              "target", "service"),
    "event_type": ("type", "event_type", "eventType", "category", "attack_type", "attackType"),
    "message": ("message", "description", "title", "summary", "details"),
    # The vendor's own severity label (as text), read with `normalize.severity_map`: it tells a
    # `critical` from the `high` it is routed as. The same fields as an integration's
    # `severity_fields` by default.
    "vendor_severity": ("severity", "Severity", "level", "risk"),
}


def _check_words(words: Mapping[str, Level], path: str) -> None:
    for word in words:
        if not word_key(word):
            raise ConfigError(path, f"{word!r} is no word (empty or only separators)")


def _check_bands(bands: Mapping[Level, float], *, low: float, high: float, most_severe: Literal["max", "min"],
                 path: str, example: str, ends: str) -> None:
    """Each level's threshold within low..high, most severe level first, strictly in the
    direction of `most_severe`; `unknown` is no band."""
    if "unknown" in bands:
        raise ConfigError(f"{path}.unknown", f"is not a band: scores outside {low:g}..{high:g} are unknown")
    if not bands:
        raise ConfigError(path, f"needs at least one level (e.g. {example})")
    previous: tuple[str, float] | None = None
    for level in LEVELS:
        if level not in bands:
            continue
        threshold = bands[level]
        if not low <= threshold <= high:
            raise ConfigError(f"{path}.{level}", f"must be between {ends}, not {threshold:g}")
        if previous is not None:
            if most_severe == "max" and threshold >= previous[1]:
                raise ConfigError(f"{path}.{level}", f"must be below {previous[0]}'s {previous[1]:g} (the highest "
                                                     "score is the most severe here: each level's lowest score, "
                                                     f"most severe level first, e.g. {example})")
            if most_severe == "min" and threshold <= previous[1]:
                raise ConfigError(f"{path}.{level}", f"must be above {previous[0]}'s {previous[1]:g} (the lowest "
                                                     "score is the most severe here: each level's highest score, "
                                                     f"most severe level first, e.g. {example})")
        previous = (level, threshold)


@dataclass(frozen=True, kw_only=True)
class SeverityScaleConfig:
    """A numeric scale of a severity scheme (`normalize.severity_schemes.<name>.scale`)."""

    min: float = 0.0
    max: float
    # Which end is the most severe: `max` (scores, CVSS: 10 is the worst) or `min`
    # (priorities: 1 is the worst).
    most_severe: Literal["max", "min"] = "max"
    # Each level's threshold: the least severe score that still has that level
    # (most_severe max: its lowest score; min: its highest).
    bands: dict[Level, float]

    def __post_init__(self) -> None:
        if not -1_000_000 <= self.min < self.max <= 1_000_000:
            raise ConfigError("max", f"must be above min ({self.min:g}), both within -1000000..1000000, "
                                     f"not {self.max:g}")
        example = ("{critical: 1, high: 2, medium: 3, low: 5}" if self.most_severe == "min"
                   else "{critical: 5, high: 4, medium: 3, low: 1}")
        _check_bands(self.bands, low=self.min, high=self.max, most_severe=self.most_severe, path="bands",
                     example=example, ends=f"min and max ({self.min:g} and {self.max:g})")

    @property
    def scale(self) -> SeverityScale:
        return SeverityScale(self.min, self.max, self.most_severe, self.bands)


@dataclass(frozen=True, kw_only=True)
class SeveritySchemeConfig:
    """A named severity scheme (`normalize.severity_schemes.<name>`): it starts from the default
    scheme (siemgate's words, `normalize.severity_map`, `severity_bands`/`severity_max`) and
    changes what it names."""

    # Words added to (and overriding) the default scheme's.
    words: dict[str, Level] = field(default_factory=dict)
    # The numeric scale: a built-in one by name (record.BUILTIN_SCALES), or its own; None: the
    # default scheme's.
    scale: str | SeverityScaleConfig | None = None

    def __post_init__(self) -> None:
        _check_words(self.words, "words")
        if isinstance(self.scale, str) and self.scale not in BUILTIN_SCALES:
            raise ConfigError("scale", f"{self.scale!r} is no built-in scale (built in: {', '.join(BUILTIN_SCALES)}; "
                                       "or give {min, max, most_severe, bands})")

    def resolved_scale(self) -> SeverityScale | None:
        if isinstance(self.scale, str):
            return BUILTIN_SCALES[self.scale]
        return self.scale.scale if self.scale is not None else None


# The scheme an integration without `severity_scheme` uses: `normalize.severity_map`,
# `severity_bands`, `severity_max`.
DEFAULT_SCHEME_NAME = "default"


@dataclass(frozen=True, kw_only=True)
class NormalizeConfig:
    """`normalize:` in the config (used by siemgate.forwarders.normalize.Normalizer)."""

    # How events of unknown severity are routed (min_severity filters, priority); they keep
    # `unknown` in every output. The default, high, lets them through every filter: an event
    # whose severity nobody could read must not vanish because of it.
    unknown_severity_as: Literal["high", "medium", "low"] = "high"
    # Extra or replacement lookup paths per normalized field, tried before the defaults.
    fields: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # The default scheme. The vendors' severity words and their level, added to (and
    # overriding) the defaults of siemgate.record.DEFAULT_SEVERITY_WORDS; compared
    # case-insensitively, `-`/`_` as spaces.
    severity_map: dict[str, Level] = field(default_factory=dict)
    # Numeric severities (numbers or numeric text) as scores: the lowest score of each level,
    # default CVSS's 0-10 bands {critical: 9, high: 7, medium: 4, low: 0}; with severity_max.
    # A 1-5 scale: {critical: 5, high: 4, medium: 3, low: 1} and severity_max 5.
    severity_bands: dict[Level, float] | None = None
    severity_max: float = DEFAULT_SEVERITY_MAX
    # Named schemes an integration can choose (`integrations[].severity_scheme`), besides
    # `default` and the built-in scales' names (record.BUILTIN_SCALES).
    severity_schemes: dict[str, SeveritySchemeConfig] = field(default_factory=dict)
    # Each integration's scheme name (from `integrations[].severity_scheme`; filled by
    # `Config`, not a YAML key). An integration not listed uses `default`.
    integration_schemes: dict[str, str] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        for name in self.fields:
            if name not in DEFAULT_FIELDS:
                known = ", ".join(DEFAULT_FIELDS)
                raise ConfigError(f"fields.{name}", f"is not a normalized field (known: {known})")
        _check_words(self.severity_map, "severity_map")
        if not 0 < self.severity_max <= 1_000_000:
            raise ConfigError("severity_max", f"must be more than 0 and at most 1000000, not {self.severity_max:g}")
        if self.severity_bands is not None:
            _check_bands(self.severity_bands, low=0.0, high=self.severity_max, most_severe="max",
                         path="severity_bands", example="{low: 0}",
                         ends=f"0 and severity_max ({self.severity_max:g})")
        for name in self.severity_schemes:
            if name == DEFAULT_SCHEME_NAME or name in BUILTIN_SCALES:
                raise ConfigError(f"severity_schemes.{name}", f"{name!r} is a built-in scheme's name: choose another")
            if not _NAME.match(name):
                raise ConfigError(f"severity_schemes.{name}", "a scheme's name must match [a-z0-9-]+")

    def scheme_names(self) -> tuple[str, ...]:
        """Every scheme an integration can name."""
        return (DEFAULT_SCHEME_NAME, *BUILTIN_SCALES, *self.severity_schemes)

    def for_integrations(self, schemes: Mapping[str, str]) -> NormalizeConfig:
        """This config with each integration's scheme name (integration -> scheme)."""
        found = dataclasses.replace(self)
        object.__setattr__(found, "integration_schemes", dict(schemes))
        return found

    @functools.cached_property
    def severity_scheme(self) -> SeverityScheme:
        """The default scheme (an integration without `severity_scheme` reads severities with it,
        in the ingest (topics) and in the forwarders (levels))."""
        return SeverityScheme(self.severity_map, self.severity_bands, self.severity_max)

    @functools.cached_property
    def _schemes(self) -> dict[str, SeverityScheme]:
        return {DEFAULT_SCHEME_NAME: self.severity_scheme}

    def scheme(self, name: str) -> SeverityScheme:
        """A scheme by name (`default`, a built-in scale's, or one of `severity_schemes`);
        KeyError for another name."""
        found = self._schemes.get(name)
        if found is None:
            if name in self.severity_schemes:
                chosen = self.severity_schemes[name]
                scale = chosen.resolved_scale()
                words = {**self.severity_map, **chosen.words}
            elif name in BUILTIN_SCALES:
                scale, words = BUILTIN_SCALES[name], dict(self.severity_map)
            else:
                raise KeyError(name)
            if scale is None:
                found = SeverityScheme(words, self.severity_bands, self.severity_max)
            else:
                found = SeverityScheme(words, scale.bands, scale.maximum, scale.minimum, scale.most_severe)
            self._schemes[name] = found
        return found

    def scheme_for(self, integration: str) -> SeverityScheme:
        """The scheme of an integration (by name); the default one for a name not configured
        (a record of an integration since removed)."""
        return self.scheme(self.integration_schemes.get(integration, DEFAULT_SCHEME_NAME))


@dataclass(frozen=True, kw_only=True)
class TlsServerConfig:
    cert: str
    key: str


@dataclass(frozen=True, kw_only=True)
class ListenConfig:
    host: str = "0.0.0.0"
    port: int = 8080
    tls: TlsServerConfig | None = None
    # Proxies/load balancers whose X-Forwarded-For is believed; empty: the TCP peer is the client.
    trusted_proxies: tuple[Network, ...] = ()
    # Each connection's bounds, enforced before authentication (siemgate.listeners): a request
    # head complete within head_timeout_seconds of its first byte (else 408), at most
    # idle_timeout_seconds between requests (longer than the sender's 5 s batch interval: its
    # connection is kept), at most max_connections open (more are answered 503 at accept). A
    # body's bound is limits.body_timeout_seconds.
    head_timeout_seconds: float = 10.0
    idle_timeout_seconds: float = 75.0
    max_connections: int = 1024

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError("port", f"must be between 0 and 65535, not {self.port}")
        _check_connection_bounds(self)


@dataclass(frozen=True, kw_only=True)
class MetricsListenConfig:
    """`metrics:` /metrics of `siemgate ingest` and `siemgate run` on a listener of its own
    (plain HTTP, nothing else served there). When set, the webhook port no longer answers
    /metrics: a scraper allowed onto this port cannot post webhooks. Changing it needs a restart."""

    host: str = "0.0.0.0"
    port: int = 9109

    def __post_init__(self) -> None:
        if not _valid_host(self.host):
            raise ConfigError("host", f"{self.host!r} is not an IP address or a host name")
        if not 0 <= self.port <= 65535:
            raise ConfigError("port", f"must be between 0 and 65535, not {self.port}")


# What one byte of a request body costs in memory while its request is in flight: the bytes as
# read, the copy read_body returns and the parsed form (events and their records), measured with
# tracemalloc: parse peak 3.2-3.7x the body for the simulator's, json.dumps-escaped, deeply
# nested and ~8 KB events, 4.4x for small camelCase vendor events; 6 covers these with margin.
# (Batches of thousands of tiny events cost more per byte, ~1 KiB per event: bounded by
# max_events_per_batch.) A gzip'd body costs 1 per byte as sent plus BODY_BYTE_COST per byte inflated.
BODY_BYTE_COST = 6
DEFAULT_MEMORY_BUDGET = 256 * 1024 * 1024


def largest_body_charge(max_body_bytes: int) -> int:
    """What one request may take of the memory budget at most: a gzip'd body of max_body_bytes
    that inflates to max_body_bytes."""
    return (BODY_BYTE_COST + 1) * max_body_bytes


@dataclass(frozen=True, kw_only=True)
class LimitsConfig:
    max_body_bytes: int = 32 * 1024 * 1024
    max_events_per_batch: int = 10_000
    # A client that has not sent its whole body by then gets 408: uvicorn has no body timeout.
    body_timeout_seconds: float = 30.0
    # The memory the request bodies in flight may take, with their parsed forms (BODY_BYTE_COST):
    # a request over it waits, unread, until requests ahead of it are answered. 0: the larger of
    # 256 MiB and what one body of max_body_bytes takes (the chart derives it from the memory limit).
    memory_budget_bytes: int = 0

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1024:
            raise ConfigError("max_body_bytes", "must be at least 1024")
        largest = largest_body_charge(self.max_body_bytes)
        if self.memory_budget_bytes == 0:
            object.__setattr__(self, "memory_budget_bytes", max(DEFAULT_MEMORY_BUDGET, largest))
        elif self.memory_budget_bytes < largest:
            raise ConfigError("memory_budget_bytes", f"{self.memory_budget_bytes} is less than one body of "
                              f"max_body_bytes ({self.max_body_bytes}) takes in memory: {largest} "
                              f"({BODY_BYTE_COST + 1} x max_body_bytes, gzip'd). Raise it (or the "
                              "container's memory limit it is derived from), or lower max_body_bytes")
        if self.max_events_per_batch < 1:
            raise ConfigError("max_events_per_batch", "must be at least 1")
        if self.body_timeout_seconds <= 0:
            raise ConfigError("body_timeout_seconds", "must be positive")


@dataclass(frozen=True, kw_only=True)
class QuarantineConfig:
    """Where bodies that are not a JSON batch are kept, so that nothing answered 400 is lost."""

    path: str = "./data/quarantine"
    max_bytes: int = 256 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class AuthConfig:
    header: str
    # Several values are accepted at once so that a key can be rotated without a 401.
    # Empty values (an unset `${NEXT_KEY:-}`) are ignored.
    values: tuple[Secret, ...]

    def __post_init__(self) -> None:
        if not _HEADER.match(self.header):
            raise ConfigError("header", f"{self.header!r} is not a valid HTTP header name")
        object.__setattr__(self, "values", tuple(v for v in self.values if v.reveal()))
        if not self.values:
            raise ConfigError("values", "needs at least one non-empty secret (check the ${VAR}s it uses)")


@dataclass(frozen=True, kw_only=True)
class ConfirmationConfig:
    """How the vendor's confirmation message is recognised, and whether siemgate requests its link."""

    mode: Literal["manual", "auto"] = "manual"
    # Hosts (exact, or `*.example.com`) that a confirmation link may point to in `auto` mode.
    allowed_hosts: tuple[str, ...] = ()
    # Links resolving to private, loopback or link-local addresses are refused unless allowed here.
    allow_private_addresses: bool = False
    ca_file: str | None = None
    timeout_seconds: float = 10.0
    max_response_bytes: int = 64 * 1024
    # A field whose name contains this (case-insensitive) and holds an https URL is a confirmation.
    field_hint: str = "confirm"
    # Fields that name a message's type, and the values meaning "confirmation" or "test".
    type_fields: tuple[str, ...] = ("type", "message_type", "messageType", "event_type", "eventType")
    confirmation_types: tuple[str, ...] = (
        "confirmation",
        "confirm",
        "webhook_confirmation",
        "subscription_confirmation",
        "integration_confirmation",
    )
    test_types: tuple[str, ...] = ("test", "test_integration", "integration_test", "webhook_test", "test_event")
    # Top-level boolean fields (exact names) that mark a test message when `true`.
    test_flags: tuple[str, ...] = ("test", "Test", "isTest", "IsTest", "is_test", "is-test")

    def __post_init__(self) -> None:
        if self.timeout_seconds <= 0 or self.timeout_seconds > 60:
            raise ConfigError("timeout_seconds", "must be between 0 and 60")
        if self.max_response_bytes < 1:
            raise ConfigError("max_response_bytes", "must be positive")


@dataclass(frozen=True, kw_only=True)
class IntegrationConfig:
    name: str
    path: str = ""
    auth: AuthConfig
    allowed_cidrs: tuple[Network, ...] = ()
    confirmation: ConfirmationConfig = field(default_factory=ConfirmationConfig)
    # An object body holding the events under one of these keys is a batch.
    batch_keys: tuple[str, ...] = ("events", "alerts", "data", "items")
    # The first of these present in an event is its id; otherwise the id is a content hash.
    id_fields: tuple[str, ...] = ("id", "event_id", "eventId", "alert_id", "alertId", "uuid")
    # The first of these present in an event is its severity.
    severity_fields: tuple[str, ...] = ("severity", "Severity", "level", "risk")
    # How its severities are read: `default` (normalize.severity_map/bands/max), a built-in
    # scale (scores-0-10, scores-1-5, scores-1-4, priority-1-5, priority-1-4) or one of
    # `normalize.severity_schemes`. None: default.
    severity_scheme: str | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError("name", f"{self.name!r} must match [a-z0-9-]+ (at most 63 characters)")
        if not self.path:
            object.__setattr__(self, "path", f"/webhook/{self.name}")
        if not self.path.startswith("/") or any(c in self.path for c in " ?#"):
            raise ConfigError("path", f"{self.path!r} must be an absolute URL path such as /webhook/name")
        if any(c in self.path for c in "{}%\\") or not self.path.isprintable():
            # `{x}` would be a route parameter matching every integration's path (the other
            # integration's sender then gets 401 and disables itself); `%xx` never matches, as
            # requests are routed by their decoded path.
            raise ConfigError("path", f"{self.path!r}: write the path as it is, without {{}}, %, \\ or control "
                                      "characters (e.g. /webhook/name)")
        if self.path in ("/healthz", "/readyz", "/metrics"):
            raise ConfigError("path", f"{self.path} is reserved")


_EXTENSION_KEY = re.compile(r"[A-Za-z]+")


@dataclass(frozen=True, kw_only=True)
class KafkaOAuthConfig:
    """Where SASL OAUTHBEARER's token comes from (`sasl_mechanism: OAUTHBEARER`).

    `oidc`: an OAuth 2.0 client-credentials grant at `token_endpoint` (Confluent Cloud, Strimzi
    with Keycloak, Azure Event Hubs, any OIDC provider). `aws_msk_iam`: an Amazon MSK IAM token,
    a SigV4-signed URL made with the default AWS credential chain (IRSA / EKS Pod Identity,
    instance profile, environment), optionally assuming `aws_role_arn`.
    """

    provider: Literal["oidc", "aws_msk_iam"] = "oidc"
    token_endpoint: str | None = None
    client_id: str | None = None
    client_secret: Secret | None = None
    # How the client authenticates at the token endpoint: HTTP Basic (RFC 6749's default, what
    # Kafka's own clients send) or client_id/client_secret in the form.
    client_auth: Literal["basic", "post"] = "basic"
    # Space-separated, as RFC 6749 has it; Azure Event Hubs: https://<namespace>.servicebus.windows.net/.default
    scope: str | None = None
    # Some providers want the audience as a form field of the token request.
    audience: str | None = None
    # SASL extensions sent with the token (RFC 7628), e.g. Confluent Cloud's logicalCluster and identityPoolId.
    extensions: dict[str, str] = field(default_factory=dict)
    # The CA bundle that verifies the token endpoint (default: the system's).
    ca_file: str | None = None
    # aws_msk_iam: the cluster's region, and a role to assume first (optional).
    aws_region: str | None = None
    aws_role_arn: str | None = None
    # A token is replaced once this fraction of its lifetime has passed (before it expires).
    refresh_fraction: float = 0.8
    timeout_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.provider == "oidc":
            if not self.token_endpoint:
                raise ConfigError("token_endpoint", "provider oidc needs the OAuth token endpoint URL "
                                                    "(https://.../token)")
            if not self.token_endpoint.startswith(("https://", "http://")):
                raise ConfigError("token_endpoint", f"{self.token_endpoint!r} must be an http(s) URL")
            if not (self.client_id and self.client_secret):
                raise ConfigError("client_id", "provider oidc needs client_id and client_secret "
                                               "(the client-credentials grant)")
        elif not self.aws_region:
            raise ConfigError("aws_region", "provider aws_msk_iam needs the MSK cluster's region, e.g. us-east-1")
        for key in self.extensions:
            # RFC 7628: key = 1*(ALPHA); "auth" is the token itself.
            if not _EXTENSION_KEY.fullmatch(key) or key == "auth":
                raise ConfigError(f"extensions.{key}", "SASL extension names are letters only, and not 'auth'")
        for key, value in self.extensions.items():
            if "\x01" in value:
                raise ConfigError(f"extensions.{key}", "must not contain the control character 0x01")
        if not 0.1 <= self.refresh_fraction <= 0.95:
            raise ConfigError("refresh_fraction", "must be between 0.1 and 0.95")
        if self.timeout_seconds <= 0:
            raise ConfigError("timeout_seconds", "must be positive")


@dataclass(frozen=True, kw_only=True)
class KafkaSecurityConfig:
    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] = "PLAIN"
    username: str | None = None
    password: Secret | None = None
    oauth: KafkaOAuthConfig | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True

    def __post_init__(self) -> None:
        if not self.protocol.startswith("SASL"):
            return
        if self.sasl_mechanism == "OAUTHBEARER":
            if self.oauth is None:
                raise ConfigError("oauth", "sasl_mechanism OAUTHBEARER needs an oauth section "
                                           "(provider oidc or aws_msk_iam; see docs/KAFKA.md)")
        elif not (self.username and self.password):
            raise ConfigError("username", f"protocol {self.protocol} needs username and password")


@dataclass(frozen=True, kw_only=True)
class TopicsConfig:
    create: bool = True
    partitions: int = 6
    # None: min(3, number of brokers).
    replication_factor: int | None = None

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ConfigError("partitions", "must be at least 1")
        if self.replication_factor is not None and self.replication_factor < 1:
            raise ConfigError("replication_factor", "must be at least 1")


@dataclass(frozen=True, kw_only=True)
class KafkaConfig:
    bootstrap_servers: tuple[str, ...] | str = "localhost:9092"
    topic_prefix: str = "siemgate"
    idempotence: bool = True
    compression: Literal["zstd", "snappy", "lz4", "gzip", "none"] = "zstd"
    # How long a batch may wait for Kafka's acks=all before the answer is given up on.
    produce_timeout_seconds: float = 10.0
    # aiokafka record-batch size: one 500-event webhook batch should fit in one produce request.
    max_batch_bytes: int = 1024 * 1024
    # Must stay below the broker's message.max.bytes for a single record to be accepted.
    max_request_bytes: int = 1024 * 1024
    client_id: str = "siemgate"
    security: KafkaSecurityConfig = field(default_factory=KafkaSecurityConfig)
    topics: TopicsConfig = field(default_factory=TopicsConfig)

    def __post_init__(self) -> None:
        servers = self.bootstrap_servers
        if isinstance(servers, str):
            servers = tuple(s.strip() for s in servers.split(",") if s.strip())
            object.__setattr__(self, "bootstrap_servers", servers)
        if not servers:
            raise ConfigError("bootstrap_servers", "needs at least one host:port")
        if not _TOPIC_PREFIX.match(self.topic_prefix):
            raise ConfigError("topic_prefix", "must be 1-100 characters of A-Z a-z 0-9 . _ -")
        if self.produce_timeout_seconds <= 0:
            raise ConfigError("produce_timeout_seconds", "must be positive")

    @property
    def servers(self) -> tuple[str, ...]:
        servers = self.bootstrap_servers
        return (servers,) if isinstance(servers, str) else servers


@dataclass(frozen=True, kw_only=True)
class SpoolConfig:
    """The ingest's local spool (bus.type kafka): batches Kafka does not take in time wait here."""

    # A directory, one per ingest process; the spool is <path>/spool.db. Keep it across restarts.
    path: str = "./data/spool"
    # Logical bytes (keys, values, headers) the spool may hold; past it, batches Kafka refuses get 503.
    max_bytes: int = 10 * 1024**3
    # A batch Kafka has not acknowledged by then is written to the spool and answered 200.
    ack_deadline_seconds: float = 2.0
    # After SIGTERM, once the last request is answered: how long the spool keeps going to Kafka
    # before the process exits. What is left stays in the spool for the next start on this path
    # (or `siemgate spool drain`). Keep the pod's grace period above this plus the body timeout.
    drain_timeout_seconds: float = 300.0
    # The drainer's progress watchdog (siemgate.bus.spooling): events in the spool and no chunk
    # acknowledged by Kafka for this long, and the drainer is stalled: /healthz fails (the
    # liveness probe restarts the process; the spool is kept), siemgate_stalled{component=
    # "spool_drainer"} is 1. A Kafka outage longer than this restarts the ingest too.
    stall_timeout_seconds: float = 600.0

    def __post_init__(self) -> None:
        if self.max_bytes < 1024:
            raise ConfigError("max_bytes", "must be at least 1024")
        if not 0 < self.ack_deadline_seconds <= 60:
            raise ConfigError("ack_deadline_seconds", "must be more than 0 and at most 60")
        if not 0 <= self.drain_timeout_seconds <= 86400:
            raise ConfigError("drain_timeout_seconds", "must be between 0 and 86400")
        if not 0 < self.stall_timeout_seconds <= 86400:
            raise ConfigError("stall_timeout_seconds", "must be more than 0 and at most 86400")


# The smallest bus.max_bytes: room for the index and a few batches.
MIN_LOG_BYTES = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class BusConfig:
    type: Literal["embedded", "kafka"] = "embedded"
    path: str = "./data/siemgate.db"
    # The embedded log's bytes on disk (segments, index and WAL); past it, appends get 503
    # until retention frees space. Keep it below the volume's size, with headroom.
    max_bytes: int = 10 * 1024**3
    kafka: KafkaConfig | None = None
    spool: SpoolConfig = field(default_factory=SpoolConfig)

    def __post_init__(self) -> None:
        if self.type == "kafka" and self.kafka is None:
            raise ConfigError("kafka", "is required when bus.type is kafka (bootstrap_servers at least)")
        if self.kafka is not None and not self.spool.stall_timeout_seconds > self.kafka.produce_timeout_seconds:
            raise ConfigError("spool.stall_timeout_seconds", f"must be longer than kafka.produce_timeout_seconds "
                                                             f"({self.kafka.produce_timeout_seconds:g}): one "
                                                             "attempt to send a chunk takes up to that long")
        if self.max_bytes < MIN_LOG_BYTES:
            raise ConfigError("max_bytes", f"must be at least {MIN_LOG_BYTES} (1 MiB)")

    @property
    def topic_prefix(self) -> str:
        """The topics' prefix: `kafka.topic_prefix`, or `siemgate` on the embedded bus without one."""
        return self.kafka.topic_prefix if self.kafka is not None else "siemgate"


@dataclass(frozen=True, kw_only=True)
class SinkConfig:
    """A sink entry. Its keys are checked by the sink type's own settings type."""

    name: str
    type: str
    # The validated settings: an instance of the sink type's SinkSettings subclass.
    settings: SinkSettings


@dataclass(frozen=True, kw_only=True)
class ForwardListenConfig:
    host: str = "0.0.0.0"
    port: int = 9108

    def __post_init__(self) -> None:
        if not _valid_host(self.host):
            raise ConfigError("host", f"{self.host!r} is not an IP address or a host name")
        if not 0 <= self.port <= 65535:
            raise ConfigError("port", f"must be between 0 and 65535, not {self.port}")


@dataclass(frozen=True, kw_only=True)
class ForwardConfig:
    """`forward:` settings shared by every sink's forwarder."""

    # SIGTERM: how long in-flight events may take to be confirmed and committed.
    drain_timeout_seconds: float = 20.0
    # Consumer group of a sink: `<group_prefix>-<sink name>`; default the topic prefix.
    group_prefix: str | None = None
    # Seconds between lag measurements (metrics).
    lag_interval_seconds: float = 5.0
    # How long the broker may hold a fetch that has too little data. Kafka answers as soon as
    # any data is there; some brokers (Tansu) wait the whole time while the consumer idles.
    fetch_max_wait_ms: int = 100
    # /healthz, /readyz and /metrics of `siemgate forward`.
    listen: ForwardListenConfig = field(default_factory=lambda: ForwardListenConfig())
    # The progress watchdog (siemgate.forwarders.watchdog): a forwarder with events to read and
    # no fetch, delivery or commit for this long is stalled, and /healthz fails. Keep it above
    # the sinks' own longest waits (retry.max_seconds, timeout_seconds, write_timeout_seconds).
    stall_timeout_seconds: float = 300.0

    def __post_init__(self) -> None:
        if self.drain_timeout_seconds < 0:
            raise ConfigError("drain_timeout_seconds", f"must be 0 or more, not {self.drain_timeout_seconds:g}")
        if self.lag_interval_seconds <= 0:
            raise ConfigError("lag_interval_seconds", f"must be positive, not {self.lag_interval_seconds:g}")
        if self.fetch_max_wait_ms < 0:
            raise ConfigError("fetch_max_wait_ms", f"must be 0 or more, not {self.fetch_max_wait_ms}")
        if not self.stall_timeout_seconds > self.lag_interval_seconds:
            raise ConfigError("stall_timeout_seconds", f"must be longer than lag_interval_seconds "
                                                       f"({self.lag_interval_seconds:g}): a stall is judged on the "
                                                       "measured lag (300 is a good start)")


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?$")
ADMIN_TOKEN_MIN_CHARS = 16


@dataclass(frozen=True, kw_only=True)
class AdminConfig:
    """The operator status page and its JSON API (`siemgate.admin`), on a listener of its own.

    Off unless configured. `token` (a `${VAR}`, at least 16 characters) is what an operator
    logs in with and what `Authorization: Bearer` carries. Never on the webhook port: the
    page must stay inside the network even when the webhooks are public. Changing it needs
    a restart."""

    host: str = "127.0.0.1"
    port: int = 9180
    token: Secret
    # Each connection's bounds (siemgate.listeners), as on the webhook port; a form is small.
    head_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 10.0
    idle_timeout_seconds: float = 5.0
    max_connections: int = 64

    def __post_init__(self) -> None:
        if not _valid_host(self.host):
            raise ConfigError("host", f"{self.host!r} is not an IP address or a host name")
        if not 0 <= self.port <= 65535:
            raise ConfigError("port", f"must be between 0 and 65535, not {self.port}")
        _check_connection_bounds(self)
        if self.body_timeout_seconds <= 0:
            raise ConfigError("body_timeout_seconds", "must be positive")
        if len(self.token.reveal()) < ADMIN_TOKEN_MIN_CHARS:
            raise ConfigError("token", f"must be at least {ADMIN_TOKEN_MIN_CHARS} characters (check the ${{VAR}} "
                                       "it uses); e.g. `openssl rand -base64 24`")


def _check_connection_bounds(listener: ListenConfig | AdminConfig) -> None:
    for key in ("head_timeout_seconds", "idle_timeout_seconds"):
        if getattr(listener, key) <= 0:
            raise ConfigError(key, "must be positive")
    if listener.max_connections < 1:
        raise ConfigError("max_connections", "must be at least 1")


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_HOSTNAME.match(host))
    return True


@dataclass(frozen=True, kw_only=True)
class Config:
    listen: ListenConfig = field(default_factory=ListenConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    quarantine: QuarantineConfig = field(default_factory=QuarantineConfig)
    # Small durable state: confirmation links and each integration's pending/confirmed state.
    state_dir: str = "./data/state"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    integrations: tuple[IntegrationConfig, ...] = ()
    bus: BusConfig = field(default_factory=BusConfig)
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    forward: ForwardConfig = field(default_factory=ForwardConfig)
    sinks: tuple[SinkConfig, ...] = ()
    # The status page and its API (siemgate.admin); None: off.
    admin: AdminConfig | None = None
    # /metrics on a port of its own (ingest, run); None: on the webhook port (listen).
    metrics: MetricsListenConfig | None = None

    def __post_init__(self) -> None:
        # Each integration's severity scheme, checked and handed to `normalize` (which the
        # ingest and the forwarders read severities with): also after dataclasses.replace.
        known = self.normalize.scheme_names()
        schemes: dict[str, str] = {}
        for index, integration in enumerate(self.integrations):
            name = integration.severity_scheme
            if name is None:
                continue
            if name not in known:
                defined = ", ".join(self.normalize.severity_schemes) or "none"
                built_in = ", ".join(n for n in known if n not in self.normalize.severity_schemes)
                raise ConfigError(f"integrations[{index}].severity_scheme",
                                  f"{name!r} is no severity scheme (normalize.severity_schemes defines: {defined}; "
                                  f"built in: {built_in})")
            schemes[integration.name] = name
        if schemes != self.normalize.integration_schemes:
            object.__setattr__(self, "normalize", self.normalize.for_integrations(schemes))

    def integration(self, name: str) -> IntegrationConfig:
        for integration in self.integrations:
            if integration.name == name:
                return integration
        known = ", ".join(i.name for i in self.integrations) or "none"
        raise ConfigError("integrations", f"no integration named {name!r} (configured: {known})")


# A config is a few KiB; a file past this is another file passed by mistake (a log, an archive
# sink's output), which would otherwise be read whole, at start and on every reload poll.
MAX_CONFIG_BYTES = 16 * 1024 * 1024


def read_config_bytes(path: str | Path) -> bytes:
    """The config file's bytes. Raises OSError, also for a file over MAX_CONFIG_BYTES."""
    with open(path, "rb") as handle:
        data = handle.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise OSError(f"larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB: not a siemgate config (check -c FILE)")
    return data


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file. Raises `ConfigError` (one line) on any problem."""
    import os

    source = str(path)
    try:
        text = read_config_bytes(path).decode("utf-8")
    except FileNotFoundError:
        raise ConfigError("", "file not found (pass the config with -c FILE)", source=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"cannot read: {exc}", source=source) from None
    try:
        return parse_config(text, os.environ if environ is None else environ)
    except ConfigError as exc:
        raise exc.with_source(source) from None


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key written twice in one mapping (plain YAML keeps the
    last one silently: a second `integrations:` or `auth:` would replace the first unseen).
    Keys brought in by a merge (`<<: *anchor`) may still be overridden."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[object, object]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=False)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: SafeConstructor refuses it below
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found key {key!r} twice: keep one (YAML would silently use the last)", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def parse_config(text: str, environ: Mapping[str, str]) -> Config:
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        if "'\\t'" in problem:
            problem += " (YAML indents with spaces only: replace the tab)"
        raise ConfigError("", f"{where}{problem}") from None
    except RecursionError:
        raise ConfigError("", "the YAML is nested too deeply to be a siemgate config") from None
    if data is None:
        # Never a working config, and what a reload reads while a file is edited in place
        # (truncated, then written): all integrations and sinks would be dropped.
        raise ConfigError("", "the config is empty (no keys at all): write at least integrations: and sinks: "
                              "(deploy/examples/local.yaml is a start)")
    if not isinstance(data, dict):
        raise ConfigError("", "the config must be a YAML mapping (listen:, integrations:, bus:, sinks:)")
    sinks_raw = data.pop("sinks", None) or []
    try:
        with expansions_hidden():
            config = build(Config, data, environ)
            sinks = _parse_sinks(sinks_raw, environ)
    except RecursionError:
        raise ConfigError("", "the YAML is nested too deeply to be a siemgate config") from None
    _check_unique("integrations", [i.name for i in config.integrations], "name")
    _check_unique("integrations", [i.path for i in config.integrations], "path")
    _check_admin(config)
    _check_metrics(config)
    return dataclasses.replace(config, sinks=sinks)


def _check_admin(config: Config) -> None:
    """The admin listener never shares a port with the webhooks (nor with `forward.listen`)."""
    admin = config.admin
    if admin is None or admin.port == 0:
        return
    if admin.port == config.listen.port:
        raise ConfigError("admin.port", f"{admin.port} is the webhook port (listen.port): the status page needs a "
                                        "port of its own")
    if admin.port == config.forward.listen.port:
        raise ConfigError("admin.port", f"{admin.port} is forward.listen.port: the status page needs a port of "
                                        "its own")


def _check_metrics(config: Config) -> None:
    """The metrics listener shares a port with neither the webhooks nor the status page."""
    metrics = config.metrics
    if metrics is None or metrics.port == 0:
        return
    if metrics.port == config.listen.port:
        raise ConfigError("metrics.port", f"{metrics.port} is the webhook port (listen.port): the metrics listener "
                                          "needs a port of its own (or drop `metrics:` to serve /metrics there)")
    if config.admin is not None and metrics.port == config.admin.port:
        raise ConfigError("metrics.port", f"{metrics.port} is admin.port: the metrics listener needs a port of its own")


def _parse_sinks(raw: object, environ: Mapping[str, str]) -> tuple[SinkConfig, ...]:
    if not isinstance(raw, list):
        raise ConfigError("sinks", "must be a list of sinks")
    sinks = []
    for index, item in enumerate(raw):
        path = f"sinks[{index}]"
        if not isinstance(item, dict):
            raise ConfigError(path, "must be a mapping with at least name and type")
        name, kind = item.get("name"), item.get("type")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"{path}.name", "is required and must match [a-z0-9-]+")
        if not isinstance(kind, str) or kind not in SINK_TYPES:
            raise ConfigError(f"{path}.type", f"must be one of {', '.join(SINK_TYPES)}, not {kind!r}")
        options = {k: v for k, v in item.items() if k != "type"}
        settings = build_settings(kind, options, environ, path)
        sinks.append(SinkConfig(name=name, type=kind, settings=settings))
    _check_unique("sinks", [s.name for s in sinks], "name")
    return tuple(sinks)


def _check_unique(section: str, values: list[str], key: str) -> None:
    seen: set[str] = set()
    for index, value in enumerate(values):
        if value in seen:
            raise ConfigError(f"{section}[{index}].{key}", f"{value!r} is used twice; each must be unique")
        seen.add(value)
