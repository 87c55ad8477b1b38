"""`siemgate es-setup`: the index template (and data stream or index) an Elasticsearch sink writes to.

For each `elasticsearch` sink: `PUT /_index_template/siemgate-<target>` with the ECS
mappings of `siemgate.forwarders.formats.ecs` (the vendor's event mapped `flattened`,
unknown fields kept in `_source` but not indexed), then creates the data stream (or the
index). Idempotent: run it again after an upgrade; an existing data stream takes the new
mappings at its next rollover (`POST /<target>/_rollover`), an existing index keeps its own.

The template's `index_patterns` is the target's exact name, so it applies to that data stream
alone, and its priority (150) is above the built-in `logs` template's (100), which it must win
for that name, and below the 200 of Fleet's integration templates. What the built-in template
gives a `logs-*-*` data stream it keeps, by composing the same component templates:
`logs@mappings` (`@timestamp`, the `data_stream.*` constant_keywords), `logs@settings` (the
`logs` lifecycle policy: rollover, and `index.mapping.ignore_malformed`), then `logs@custom`
and `<type>-<dataset>@custom` when they exist (where an operator sets their own lifecycle or
settings, as for any Fleet data stream); before Elasticsearch 8.12 the built-in ones are named
`logs-mappings`/`logs-settings` (composed alone); a cluster with neither (stack templates
disabled) gets the data stream lifecycle below. A data stream of another name gets a data stream
lifecycle (`template.lifecycle`: rollover, retention unlimited until an operator sets
`data_retention`) and no ignore_malformed; an index gets neither (nothing rolls an index over).

Not required for a first try: Elasticsearch's built-in `logs-*-*` template already accepts
the default data stream; this gives the fields their ECS types (`source.ip` as `ip`, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, TextIO

import orjson

from siemgate.config import Config
from siemgate.errors import SetupError, SinkError
from siemgate.forwarders.formats.ecs import ECS_VERSION, mappings
from siemgate.forwarders.sinks.elasticsearch import ElasticsearchSinkSettings, auth_error, endpoint_for
from siemgate.forwarders.sinks.http import HttpEndpoint, short_body
from siemgate.terminal import printable

_JSON = {"Content-Type": "application/json"}


def template_name(settings: ElasticsearchSinkSettings) -> str:
    return f"siemgate-{settings.target}"


# Above the built-in logs-*-* template (100), below Fleet's integration templates (200).
PRIORITY = 150
# The built-in component templates of the logs-*-* template: their names since Elasticsearch
# 8.12, and before (8.0-8.11, where ignore_missing_component_templates may not exist yet).
LOGS_COMPONENTS: Final = ("logs@mappings", "logs@settings")
LEGACY_LOGS_COMPONENTS: Final = ("logs-mappings", "logs-settings")


def index_template(settings: ElasticsearchSinkSettings,
                   logs_components: tuple[str, ...] | None = LOGS_COMPONENTS) -> dict[str, Any]:
    """The index template of the sink's target (see the module's doc); `logs_components`: the
    cluster's built-in logs component templates (None: it has none, as with
    `stack.templates.enabled: false`: the data stream gets a lifecycle of its own)."""
    parts = settings.data_stream_parts
    body = mappings(settings.original_path, data_stream=parts)
    template: dict[str, Any] = {
        "index_patterns": [settings.target],
        "priority": PRIORITY,
        "template": {"mappings": body},
        "_meta": {"managed_by": "siemgate", "ecs_version": ECS_VERSION},
    }
    if settings.index is not None:
        return template
    template["data_stream"] = {}
    if parts is not None and parts[0] == "logs" and logs_components == LOGS_COMPONENTS:
        custom = f"{parts[0]}-{parts[1]}@custom"
        template["composed_of"] = [*logs_components, "logs@custom", custom]
        template["ignore_missing_component_templates"] = ["logs@custom", custom]
    elif parts is not None and parts[0] == "logs" and logs_components:
        template["composed_of"] = list(logs_components)
    else:
        template["template"]["lifecycle"] = {"enabled": True}
    return template


def lifecycle_note(template: dict[str, Any]) -> str:
    """What manages the target's lifecycle under `template`, for the operator."""
    if "composed_of" in template:
        customs = ("; the @custom ones apply when they exist" if "ignore_missing_component_templates" in template
                   else "; before Elasticsearch 8.12: no @custom component templates")
        return ("composed of " + ", ".join(template["composed_of"]) + ": the built-in logs lifecycle policy, "
                "ignore_malformed and data_stream mappings" + customs)
    if "lifecycle" in template["template"]:
        return "its own data stream lifecycle: rollover, no retention limit until you set data_retention"
    return "an index: no lifecycle"


async def _put(endpoint: HttpEndpoint, path: str, body: dict[str, Any] | None, name: str) -> tuple[int, str]:
    response = await endpoint.request("PUT", path, orjson.dumps(body) if body is not None else None, headers=_JSON)
    if response.status_code in (401, 403):
        raise auth_error(endpoint.url, response.status_code, short_body(response), name)
    error_type = ""
    try:
        answer = orjson.loads(response.content)
        if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
            error_type = str(answer["error"].get("type", ""))
    except orjson.JSONDecodeError:
        pass
    return response.status_code, error_type or short_body(response)


async def _exists(endpoint: HttpEndpoint, path: str, name: str) -> bool:
    response = await endpoint.request("HEAD", path)
    if response.status_code in (401, 403):
        raise auth_error(endpoint.url, response.status_code, short_body(response), name)
    if response.status_code not in (200, 404):
        raise SetupError(f"{endpoint.url}: HEAD {path}: HTTP {response.status_code} {short_body(response)}")
    return response.status_code == 200


async def logs_components(endpoint: HttpEndpoint, name: str) -> tuple[str, ...] | None:
    """The cluster's built-in logs component templates (LOGS_COMPONENTS, or before 8.12
    LEGACY_LOGS_COMPONENTS), or None when it has neither."""
    for names in (LOGS_COMPONENTS, LEGACY_LOGS_COMPONENTS):
        if all([await _exists(endpoint, f"/_component_template/{n}", name) for n in names]):
            return names
    return None


async def set_up(settings: ElasticsearchSinkSettings) -> list[str]:
    """Install the template and create the target; returns what was done, one line each."""
    endpoint = endpoint_for(settings)
    done = []
    try:
        name = template_name(settings)
        parts = settings.data_stream_parts
        components = (await logs_components(endpoint, settings.name)
                      if settings.index is None and parts is not None and parts[0] == "logs" else None)
        template = index_template(settings, components)
        status, detail = await _put(endpoint, f"/_index_template/{name}", template, settings.name)
        if status != 200:
            raise SetupError(f"{endpoint.url}: index template {name} refused: HTTP {status} {detail}")
        done.append(f"index template {name} installed (ECS {ECS_VERSION}; {lifecycle_note(template)})")
        data_stream = settings.index is None
        path = f"/_data_stream/{settings.target}" if data_stream else f"/{settings.target}"
        kind = "data stream" if data_stream else "index"
        status, detail = await _put(endpoint, path, None, settings.name)
        if status == 200:
            done.append(f"{kind} {settings.target} created")
        elif status == 400 and detail == "resource_already_exists_exception":
            later = (f"new mappings apply at its next rollover (POST /{settings.target}/_rollover)" if data_stream
                     else "it keeps its own mappings")
            done.append(f"{kind} {settings.target} already exists: {later}")
        else:
            raise SetupError(f"{endpoint.url}: cannot create {kind} {settings.target}: HTTP {status} {detail}")
    finally:
        await endpoint.close()
    return done


async def run_setup(config: Config, sinks: Sequence[str], out: TextIO) -> int:
    chosen = [(s.name, s.settings) for s in config.sinks
              if isinstance(s.settings, ElasticsearchSinkSettings) and (not sinks or s.name in sinks)]
    unknown = set(sinks) - {name for name, _ in chosen}
    if unknown:
        print(f"siemgate: no elasticsearch sink named {', '.join(sorted(unknown))}", file=out)
        return 2
    if not chosen:
        print("siemgate: the config has no elasticsearch sink", file=out)
        return 2
    failed = 0
    for name, settings in chosen:
        try:
            for line in await set_up(settings):
                print(f"{name}: {printable(line)}", file=out)
        except (SinkError, SetupError) as exc:
            failed += 1
            # What the cluster answered, escaped: no control sequence reaches the terminal.
            print(f"{name}: FAILED: {printable(str(exc))}", file=out)
    return 1 if failed else 0
