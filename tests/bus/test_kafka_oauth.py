"""SASL OAUTHBEARER to Kafka: OIDC client credentials and Amazon MSK IAM, end to end.

A real broker (Tansu) behind `OAuthBearerGateway`, a Kafka listener that requires SASL
OAUTHBEARER as a broker configured for it does (the stand-in checks the RFC 7628 client
response and the token; Tansu itself cannot). Tansu advertises the gateway's address, so every
connection a client opens (bootstrap, the partition leader, the group coordinator)
authenticates. Records go through siemgate's own publisher and consumer.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from siemgate.bus.kafka import KafkaPublisher, client_options
from siemgate.bus.kafka_bus import KafkaBus
from siemgate.bus.kafka_oauth import MskIamTokenProvider, OidcTokenProvider
from siemgate.config import KafkaConfig, KafkaOAuthConfig, KafkaSecurityConfig, TopicsConfig, parse_config
from siemgate.errors import BusUnavailable, ConfigError
from siemgate.record import Record, make_record, topic_for
from siemgate.secrets import Secret
from siemgate_standins.broker import Broker, BrokerUnavailable, free_port, start_tansu
from siemgate_standins.kafka_oauth import (
    MskIamVerifier,
    OAuthBearerGateway,
    OidcVerifier,
    Refused,
    TokenEndpoint,
    parse_client_response,
)

pytestmark = pytest.mark.anyio

CLIENT_ID, CLIENT_SECRET = "siemgate-ingest", "s3cr$t:with/odd+chars"
SCOPE = "kafka.produce kafka.consume"
ACCESS_KEY, SECRET_KEY = "AKIDSIEMGATETEST0001", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYSIEMGATEKEY"


@dataclass
class Cluster:
    gateway: OAuthBearerGateway
    broker: Broker


@pytest.fixture
def tansu_port(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """(broker port, gateway port): a Tansu that advertises the gateway's address."""
    gateway_port, broker_port = free_port(), free_port()
    try:
        broker = start_tansu(broker_port, log_path=str(tmp_path / "tansu.log"),
                             advertised=f"127.0.0.1:{gateway_port}")
    except BrokerUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Tansu needed under CI=true: {exc}")
        pytest.skip(f"no Tansu: {exc}")
    try:
        yield broker_port, gateway_port
    finally:
        broker.stop()


@pytest.fixture
async def tokens() -> AsyncIterator[TokenEndpoint]:
    async with TokenEndpoint(clients={CLIENT_ID: CLIENT_SECRET}, scopes=frozenset({SCOPE})) as endpoint:
        yield endpoint


def kafka_config(gateway: OAuthBearerGateway, oauth: KafkaOAuthConfig) -> KafkaConfig:
    return KafkaConfig(bootstrap_servers=gateway.address, topic_prefix=f"o{uuid.uuid4().hex[:8]}", idempotence=False,
                       topics=TopicsConfig(partitions=1),
                       security=KafkaSecurityConfig(protocol="SASL_PLAINTEXT", sasl_mechanism="OAUTHBEARER",
                                                    oauth=oauth))


def oidc(tokens: TokenEndpoint, **overrides: object) -> KafkaOAuthConfig:
    settings: dict[str, object] = {"provider": "oidc", "token_endpoint": tokens.token_url, "client_id": CLIENT_ID,
                                   "client_secret": Secret(CLIENT_SECRET), "scope": SCOPE}
    settings.update(overrides)
    return KafkaOAuthConfig(**settings)  # type: ignore[arg-type]


def batch(prefix: str, start: int, count: int) -> list[Record]:
    return [make_record(prefix=prefix, event={"id": f"e-{i}", "n": i, "severity": "high"}, kind="event",
                        integration="appsec", severity="high", event_id=f"e-{i}",
                        received_at="2026-12-07T00:00:00.000000Z", batch="b", seq=i, peer="192.0.2.1")
            for i in range(start, start + count)]


async def round_trip(config: KafkaConfig, count: int, *, publish_rounds: int = 1,
                     between: float = 0.0, group: str | None = "oauth-test") -> list[str]:
    """Publish `count` records per round through siemgate's publisher, read them back through its
    consumer; the event ids read."""
    bus = KafkaBus(config)
    await bus.ensure_topics()
    publisher = KafkaPublisher(config)
    await publisher.start()
    try:
        assert await publisher.wait_connected(30), "the publisher never connected through SASL OAUTHBEARER"
        for n in range(publish_rounds):
            await publisher.publish(batch(config.topic_prefix, n * count, count))
            if between:
                await asyncio.sleep(between)  # the token's lifetime has to pass: the point of the test
    finally:
        await publisher.stop()
    consumer = bus.consumer(group=group, max_records=1000, fetch_max_wait_ms=100)
    await consumer.start()
    try:
        consumer.subscribe([topic_for(config.topic_prefix, "event", "high")])
        got: list[str] = []
        async with asyncio.timeout(60):
            while len(got) < count * publish_rounds:
                fetched = await consumer.getmany(timeout_ms=500)
                got.extend(m.key.decode() for ms in fetched.values() for m in ms if m.key is not None)
        return got
    finally:
        await consumer.stop()


async def test_oidc_client_credentials_carry_every_connection(tokens: TokenEndpoint,
                                                               tansu_port: tuple[int, int]) -> None:
    broker_port, gateway_port = tansu_port
    verifier = OidcVerifier(tokens, scope=SCOPE, required_extensions={"logicalCluster": "lkc-abc123"})
    async with OAuthBearerGateway(("127.0.0.1", broker_port), verifier, port=gateway_port) as gateway:
        config = kafka_config(gateway, oidc(tokens, extensions={"logicalCluster": "lkc-abc123",
                                                                "identityPoolId": "pool-Xy1"}))
        got = await round_trip(config, 200)
    assert sorted(got) == sorted(f"e-{i}" for i in range(200))
    assert gateway.accepted and not gateway.refused
    assert {a.principal for a in gateway.accepted} == {CLIENT_ID}
    assert gateway.accepted[0].extensions == {"logicalCluster": "lkc-abc123", "identityPoolId": "pool-Xy1"}
    # One provider per Kafka client (the topic admin, the publisher's producer and its topic
    # check, the consumer), each caching its token across its connections.
    assert 1 <= sum(1 for _, status in tokens.requests if status == 200) <= 4
    assert len(gateway.accepted) > 4


async def test_tokens_are_refreshed_before_they_expire_and_no_record_is_lost(tansu_port: tuple[int, int]) -> None:
    """Tokens live 3 s; the gateway closes a connection whose token has expired (a broker with
    connections.max.reauth.ms). Publishing across several lifetimes loses nothing.

    The records are read back without a consumer group: a group join (about 3 s on Tansu)
    outlasts a 3 s token, which real token lifetimes (minutes to hours) never do."""
    broker_port, gateway_port = tansu_port
    async with TokenEndpoint(clients={CLIENT_ID: CLIENT_SECRET}, token_lifetime_seconds=3) as short:
        gateway = OAuthBearerGateway(("127.0.0.1", broker_port), OidcVerifier(short), port=gateway_port)
        async with gateway:
            config = kafka_config(gateway, oidc(short, scope=None))
            got = await round_trip(config, 50, publish_rounds=4, between=2.0, group=None)
    assert sorted(got) == sorted(f"e-{i}" for i in range(200))
    assert gateway.expired_closes >= 1  # a connection did outlive its token...
    assert not gateway.refused  # ...and no reconnection ever presented an expired one
    assert sum(1 for _, status in short.requests if status == 200) >= 3


async def test_a_refused_secret_is_an_operator_readable_error(tokens: TokenEndpoint) -> None:
    provider = OidcTokenProvider(oidc(tokens, client_secret=Secret("wrong")))
    with pytest.raises(BusUnavailable) as refused:
        await provider.token()
    message = str(refused.value)
    assert "invalid_client" in message and CLIENT_ID in message and "client_secret" in message
    assert "wrong" not in message


async def test_client_auth_post_sends_the_credentials_in_the_form(tokens: TokenEndpoint) -> None:
    provider = OidcTokenProvider(oidc(tokens, client_auth="post"))
    assert (await provider.token()) in tokens.issued


async def test_an_identity_provider_outage_keeps_the_current_token_until_it_expires() -> None:
    now = [1000.0]
    async with TokenEndpoint(clients={CLIENT_ID: CLIENT_SECRET}, token_lifetime_seconds=100) as endpoint:
        provider = OidcTokenProvider(oidc(endpoint, scope=None), clock=lambda: now[0])
        first = await provider.token()
        now[0] += 50  # before the refresh point (80 s): cached, no call
        assert await provider.token() == first and len(endpoint.requests) == 1
        now[0] += 40  # past the refresh point, before expiry: the outage is ridden out
        endpoint.fail_next = 1
        assert await provider.token() == first
        second = await provider.token()  # the next call refreshes
        assert second != first and second in endpoint.issued
        now[0] += 200  # expired, and the identity provider is down: an error, not a stale token
        endpoint.fail_next = 1
        with pytest.raises(BusUnavailable, match="refused"):
            await provider.token()


async def test_an_unreachable_token_endpoint_names_what_to_check() -> None:
    config = KafkaOAuthConfig(token_endpoint=f"http://127.0.0.1:{free_port()}/token", client_id="c",
                              client_secret=Secret("s"), timeout_seconds=2)
    with pytest.raises(BusUnavailable, match="cannot reach the Kafka OAuth token endpoint.*token_endpoint"):
        await OidcTokenProvider(config).token()


async def test_a_broker_refusal_reaches_the_publisher_as_not_connected(tokens: TokenEndpoint,
                                                                       tansu_port: tuple[int, int]) -> None:
    """The gateway wants another scope: every SASL attempt is refused, nothing is published."""
    broker_port, gateway_port = tansu_port
    async with OAuthBearerGateway(("127.0.0.1", broker_port), OidcVerifier(tokens, scope="other"),
                                  port=gateway_port) as gateway:
        publisher = KafkaPublisher(kafka_config(gateway, oidc(tokens)))
        await publisher.start()
        try:
            assert not await publisher.wait_connected(3)
        finally:
            await publisher.stop()
    assert gateway.refused and not gateway.accepted
    assert "invalid_scope" in (gateway.refused[0].reason or "")


# -- Amazon MSK IAM


def needs_signer() -> None:
    """AWS's signer is the `msk` extra (in the test extra): a failure under CI, a skip elsewhere."""
    try:
        import aws_msk_iam_sasl_signer  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("aws-msk-iam-sasl-signer-python is needed under CI=true (pip install -e '.[test]')")
        pytest.skip("aws-msk-iam-sasl-signer-python is not installed")


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Static credentials through the default chain's environment provider; nothing reaches AWS."""
    needs_signer()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.mark.usefixtures("aws_credentials")
async def test_msk_iam_tokens_signed_by_aws_signer_are_accepted_end_to_end(tansu_port: tuple[int, int]) -> None:
    broker_port, gateway_port = tansu_port
    verifier = MskIamVerifier(region="eu-west-1", credentials={ACCESS_KEY: SECRET_KEY})
    async with OAuthBearerGateway(("127.0.0.1", broker_port), verifier, port=gateway_port) as gateway:
        config = kafka_config(gateway, KafkaOAuthConfig(provider="aws_msk_iam", aws_region="eu-west-1"))
        got = await round_trip(config, 100)
    assert sorted(got) == sorted(f"e-{i}" for i in range(100))
    assert {a.principal for a in gateway.accepted} == {ACCESS_KEY} and not gateway.refused


@pytest.mark.usefixtures("aws_credentials")
async def test_msk_iam_token_is_a_presigned_connect_url_with_its_expiry() -> None:
    provider = MskIamTokenProvider(KafkaOAuthConfig(provider="aws_msk_iam", aws_region="us-east-2"))
    token = await provider.token()
    principal = MskIamVerifier(region="us-east-2", credentials={ACCESS_KEY: SECRET_KEY})(token, {})
    assert 800 < principal.expires_at - time.time() <= 900  # AWS's signer: 15 minutes
    with pytest.raises(Refused, match="signature"):
        MskIamVerifier(region="us-east-2", credentials={ACCESS_KEY: "not-the-key"})(token, {})
    with pytest.raises(Refused, match="kafka.eu-west-1"):
        MskIamVerifier(region="eu-west-1", credentials={ACCESS_KEY: SECRET_KEY})(token, {})
    assert await provider.token() == token  # cached


async def test_msk_iam_without_credentials_says_what_to_check(monkeypatch: pytest.MonkeyPatch) -> None:
    needs_signer()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ROLE_ARN",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    provider = MskIamTokenProvider(KafkaOAuthConfig(provider="aws_msk_iam", aws_region="us-east-1"))
    with pytest.raises(BusUnavailable, match="IRSA or EKS Pod Identity"):
        await provider.token()


# -- the client response and the configuration


def test_the_client_response_is_rfc_7628() -> None:
    config = KafkaOAuthConfig(provider="aws_msk_iam", aws_region="us-east-1", extensions={"logicalCluster": "lkc-1"})
    options = client_options(KafkaConfig(security=KafkaSecurityConfig(
        protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER", oauth=config)))
    assert options["sasl_mechanism"] == "OAUTHBEARER"
    assert options["sasl_oauth_token_provider"].extensions() == {"logicalCluster": "lkc-1"}
    assert "sasl_plain_password" not in options
    # What aiokafka sends, parsed by the stand-in's independent parser.
    from aiokafka.conn import OAuthAuthenticator

    authenticator = OAuthAuthenticator(sasl_oauth_token_provider=options["sasl_oauth_token_provider"])
    wire = authenticator._build_oauth_client_request("tok.en-1", authenticator._token_extensions()).encode()
    assert parse_client_response(wire) == ("tok.en-1", {"logicalCluster": "lkc-1"})
    for bad in (b"n,,\x01auth=Basic x\x01\x01", b"auth=Bearer x\x01\x01", b"n,,\x01auth=Bearer x\x01"):
        with pytest.raises(Refused):
            parse_client_response(bad)


YAML = """
sinks: [{{name: f, type: file, path: /tmp/x.ndjson}}]
bus:
  type: kafka
  kafka:
    bootstrap_servers: b:9092
    security:
      protocol: SASL_SSL
      sasl_mechanism: OAUTHBEARER
{oauth}
"""


def test_oauthbearer_configuration_is_validated_with_readable_errors() -> None:
    def load(oauth: str, environ: dict[str, str] | None = None) -> KafkaSecurityConfig:
        config = parse_config(YAML.format(oauth=oauth), environ or {})
        assert config.bus.kafka is not None
        return config.bus.kafka.security

    security = load("      oauth:\n        token_endpoint: https://idp/token\n        client_id: c\n"
                    "        client_secret: ${SECRET}\n        extensions: {logicalCluster: lkc-9}",
                    {"SECRET": "p@ss$$word"})
    assert security.oauth is not None and security.oauth.client_secret is not None
    assert security.oauth.client_secret.reveal() == "p@ss$$word"  # expanded once
    assert security.username is None  # no username/password needed with OAUTHBEARER
    with pytest.raises(ConfigError, match="oauth section"):
        load("")
    with pytest.raises(ConfigError, match="client_id and client_secret"):
        load("      oauth:\n        token_endpoint: https://idp/token\n        client_id: c")
    with pytest.raises(ConfigError, match="token endpoint"):
        load("      oauth:\n        client_id: c\n        client_secret: s")
    with pytest.raises(ConfigError, match="region"):
        load("      oauth:\n        provider: aws_msk_iam")
    with pytest.raises(ConfigError, match="letters only"):
        load("      oauth:\n        provider: aws_msk_iam\n        aws_region: us-east-1\n"
             "        extensions: {auth: x}")
    with pytest.raises(ConfigError, match="username and password"):
        parse_config(YAML.format(oauth="").replace("OAUTHBEARER", "SCRAM-SHA-512"), {})


async def test_siemgate_check_obtains_a_token_then_reaches_kafka(tokens: TokenEndpoint,
                                                                  tansu_port: tuple[int, int]) -> None:
    from siemgate.check import check_kafka

    broker_port, gateway_port = tansu_port
    async with OAuthBearerGateway(("127.0.0.1", broker_port), OidcVerifier(tokens), port=gateway_port) as gateway:
        good = await check_kafka(kafka_config(gateway, oidc(tokens)), timeout=20)
        bad = await check_kafka(kafka_config(gateway, oidc(tokens, client_secret=Secret("nope"))), timeout=20)
    assert [(r.name, r.status) for r in good][:2] == [("kafka oauth token", "ok"), ("kafka", "ok")]
    assert tokens.token_url in good[0].detail
    assert [(r.name, r.status) for r in bad] == [("kafka oauth token", "FAIL")]
    assert "invalid_client" in bad[0].detail
