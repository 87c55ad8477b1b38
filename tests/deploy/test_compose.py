"""deploy/compose.yaml and deploy/Dockerfile stay consistent with siemgate (CI cannot run
Docker): the config each container mounts loads with siemgate's own loader and the environment
compose gives it, the commands exist, the ports and paths line up."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from siemgate import __version__
from siemgate.cli import build_parser
from siemgate.config import Config, load_config
from siemgate.forwarders.service import selected_sinks
from siemgate.ingest.server import GRACEFUL_SHUTDOWN_SECONDS
from tests.deploy.support import CHART, ROOT

DEPLOY = ROOT / "deploy"
COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
DOCKERFILE = (DEPLOY / "Dockerfile").read_text()
SIEMGATE_SERVICES = sorted(name for name, s in COMPOSE["services"].items()
                           if s.get("build", {}).get("dockerfile") == "deploy/Dockerfile")


def interpolate(value: str, host_env: dict[str, str]) -> str:
    """Compose's own interpolation of compose.yaml values (${VAR}, ${VAR:-default}, $$)."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(3)
        if host_env.get(name):
            return host_env[name]
        assert default is not None or match.group(2) is not None, f"${{{name}}} has no default in compose.yaml"
        return default or ""

    return re.sub(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}", substitute, value)


def service_env(service: dict[str, Any]) -> dict[str, str]:
    """What the container's environment is when compose runs with an empty host environment."""
    return {k: interpolate(str(v), {}) for k, v in (service.get("environment") or {}).items()}


def seconds(duration: str) -> float:
    match = re.fullmatch(r"([0-9]+)(ms|s|m)", duration)
    assert match, duration
    return int(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[match.group(2)]


@pytest.fixture(scope="module", params=SIEMGATE_SERVICES)
def service(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any], Any, Config]:
    """(name, compose service, parsed command, the config siemgate loads in that container)."""
    name = request.param
    spec = COMPOSE["services"][name]
    args = build_parser().parse_args(spec["command"])
    mounts = {}
    for volume in spec["volumes"]:
        parts = volume.split(":")
        if len(parts) >= 2 and parts[0].startswith("."):
            mounts[parts[1]] = DEPLOY / parts[0]
    assert args.config in mounts, f"{name}: -c {args.config} is not a mounted file"
    config = load_config(mounts[args.config], service_env(spec))
    return name, spec, args, config


def test_there_is_an_ingest_and_a_forwarder() -> None:
    commands = sorted(COMPOSE["services"][s]["command"][0] for s in SIEMGATE_SERVICES)
    assert commands == ["forward", "ingest"]


def test_kafka_runs_in_kraft_mode() -> None:
    kafka = COMPOSE["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "zookeeper" not in json.dumps(kafka).lower()
    assert str(env["KAFKA_NODE_ID"]) in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split("@")[0]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"]), "a base64url UUID"
    assert kafka["healthcheck"]["test"][0] == "CMD"


def test_commands_run_siemgate_on_the_mounted_config(service: tuple[str, dict[str, Any], Any, Config]) -> None:
    name, spec, args, config = service
    assert spec["image"] and spec["build"]["context"] == ".."
    assert (DEPLOY / spec["build"]["context"] / spec["build"]["dockerfile"]).is_file()
    assert config.bus.type == "kafka", "`siemgate ingest` and `siemgate forward` run on Kafka"
    if args.command == "forward":
        assert args.sink, f"{name}: one forwarder per sink"
        selected_sinks(config, args.sink)  # what `siemgate forward` checks before it starts
    assert spec["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_kafka_address_is_the_kafka_service(service: tuple[str, dict[str, Any], Any, Config]) -> None:
    _, _, _, config = service
    assert config.bus.kafka is not None
    advertised = COMPOSE["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    listeners = {url.split("://", 1)[1] for url in advertised.split(",")}
    assert set(config.bus.kafka.servers) <= listeners


def test_ports_and_health_checks_match_the_listeners(service: tuple[str, dict[str, Any], Any, Config]) -> None:
    name, spec, args, config = service
    port = config.forward.listen.port if args.command == "forward" else config.listen.port
    host = config.forward.listen.host if args.command == "forward" else config.listen.host
    assert host == "0.0.0.0", f"{name}: reachable from outside its container"
    for published in spec.get("ports", []):
        assert int(str(published).rsplit(":", 1)[1]) == port
    if args.command == "ingest":
        assert spec["ports"], "the webhook is published"
    check = " ".join(spec["healthcheck"]["test"])
    assert spec["healthcheck"]["test"][0] == "CMD", "exec form: no shell in the check"
    assert f"http://127.0.0.1:{port}/readyz" in check
    compile(spec["healthcheck"]["test"][-1], "healthcheck", "exec")


def test_read_only_container_writes_only_to_its_volumes(service: tuple[str, dict[str, Any], Any, Config]) -> None:
    name, spec, args, config = service
    assert spec["read_only"] is True
    assert spec["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in spec["security_opt"]
    volumes = [v.split(":")[1] if ":" in v else v for v in spec["volumes"]]
    writable = [v for v in volumes if v == "/data"] + list(spec.get("tmpfs", []))
    paths = [config.state_dir, config.quarantine.path, config.bus.spool.path]
    paths += [s.settings.path for s in config.sinks if s.type == "file"]
    for path in paths:
        assert any(path.startswith(w.rstrip("/") + "/") for w in writable), f"{name}: {path} is read-only"
    del args


def test_stop_grace_covers_the_drain(service: tuple[str, dict[str, Any], Any, Config]) -> None:
    name, spec, args, config = service
    grace = seconds(spec["stop_grace_period"])
    needed = config.forward.drain_timeout_seconds + 5 if args.command == "forward" else GRACEFUL_SHUTDOWN_SECONDS
    assert grace > needed, f"{name}: {grace}s to stop, {needed}s of drain"


def test_user_is_the_images_and_the_charts(service: tuple[str, dict[str, Any], Any, Config]) -> None:
    _, spec, _, _ = service
    chart = yaml.safe_load((CHART / "values.yaml").read_text())
    expected = f"{chart['podSecurityContext']['runAsUser']}:{chart['podSecurityContext']['runAsGroup']}"
    assert spec["user"] == expected == dockerfile_user()


# --- the Dockerfile ---------------------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def dockerfile_user() -> str:
    users = [rest for keyword, rest in instructions() if keyword == "USER"]
    return users[-1]


def test_dockerfile_is_multi_stage_on_slim_python_311() -> None:
    args = {rest.split("=", 1)[0]: rest.split("=", 1)[1] for k, rest in instructions() if k == "ARG" and "=" in rest}
    stages = [rest for keyword, rest in instructions() if keyword == "FROM"]
    assert len(stages) >= 2
    for stage in stages:
        image = stage.split()[0].replace("${PYTHON_IMAGE}", args["PYTHON_IMAGE"])
        assert re.fullmatch(r"python:3\.11-slim(-[a-z]+)?", image), image
    runtime = DOCKERFILE.split("FROM ")[-1]
    assert "COPY --from=build" in runtime
    assert not re.search(r"apt-get install|pip install", runtime), "nothing built in the runtime stage"


def test_dockerfile_runs_siemgate_as_a_numeric_non_root_user() -> None:
    user = dockerfile_user()
    assert re.fullmatch(r"[0-9]+:[0-9]+", user) and not user.startswith("0:")
    entrypoints = [rest for keyword, rest in instructions() if keyword == "ENTRYPOINT"]
    assert [json.loads(e) for e in entrypoints] == [["siemgate"]], "exec form, no shell"
    cmd = [rest for keyword, rest in instructions() if keyword == "CMD"][-1]
    assert json.loads(cmd) == ["--help"], "the command is chosen by compose or the chart"


def test_dockerfile_is_ready_for_a_read_only_root() -> None:
    kinds = dict(instructions())
    assert json.loads(kinds["VOLUME"]) == ["/data"]
    assert kinds["WORKDIR"] == "/data", "relative paths and SQLite's temporary files on the volume"
    assert "PYTHONDONTWRITEBYTECODE=1" in DOCKERFILE
    assert "compileall" in DOCKERFILE, "bytecode compiled at build time"
    assert "chown 10001:10001 /data" in DOCKERFILE


def test_dockerfile_labels_follow_oci() -> None:
    labels = " ".join(rest for keyword, rest in instructions() if keyword == "LABEL")
    for key in ("title", "description", "version", "revision", "created", "licenses", "source"):
        assert f"org.opencontainers.image.{key}=" in labels
    version = next(rest for keyword, rest in instructions() if keyword == "ARG" and rest.startswith("VERSION="))
    assert version == f"VERSION={__version__}"


def test_dockerignore_keeps_the_build_context_small() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in lines, "everything is excluded unless named"
    assert {"!pyproject.toml", "!README.md", "!siemgate/"} <= set(lines)
    for copied in re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE, re.M):
        for source in copied.split():
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_readme_documents_the_compose_run() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docker compose -f deploy/compose.yaml up" in readme
    assert "deploy/compose/siemgate.yaml" in readme
    assert "helm install" in readme

