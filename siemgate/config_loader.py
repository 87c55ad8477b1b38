"""Turn a YAML document into the frozen dataclasses of `siemgate.config`.

Generic and strict: unknown keys are errors naming the key path, every value is checked
against its field's type, `${VAR}` / `${VAR:-default}` are expanded from the environment in
string scalars (`$$` is a literal `$`), `${file:/path}` / `${file:/path:-default}` from a file
(a mounted Secret key: its content, one trailing newline stripped). Each error is one line that
says what to change; a file's content never appears in one.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import difflib
import ipaddress
import math
import re
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from siemgate.errors import ConfigError
from siemgate.secrets import Secret, register

T = TypeVar("T")

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{file:([^}]*?)(?::-([^}]*))?\}")
# A secret file larger than this is not a secret but a mistake (a directory of logs, a disk image).
MAX_SECRET_FILE_BYTES = 1024 * 1024
NetworkType = ipaddress.IPv4Network | ipaddress.IPv6Network
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def expand(text: str, environ: Mapping[str, str], path: str) -> str:
    """Expand `${VAR}`, `${VAR:-default}`, `${file:/path}` and `${file:/path:-default}`; an
    unset variable or unreadable file without default is an error."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        if match.group(3) is not None:
            content = read_secret_file(match.group(3), match.group(4), path)
            if content != match.group(4):
                _note_expansion(content, match.group(0))
            return content
        name, default = match.group(1), match.group(2)
        value = environ.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                raise ConfigError(
                    path,
                    f"environment variable {name} is not set "
                    f"(set it, or write ${{{name}:-default}} to give a default)",
                )
            return default
        _note_expansion(value, match.group(0))
        return value

    return _VAR.sub(substitute, text)


# (value, the `${...}` it came from) of each expansion from the environment or a file, while
# `expansions_hidden` collects them.
_EXPANDED: contextvars.ContextVar[list[tuple[str, str]] | None] = contextvars.ContextVar("expanded", default=None)


def _note_expansion(value: str, source: str) -> None:
    found = _EXPANDED.get()
    if found is not None and len(value) >= 8:  # shorter ones would replace words (`info`, `json`)
        found.append((value, source))


@contextlib.contextmanager
def expansions_hidden() -> Iterator[None]:
    """Within it, a ConfigError shows `${VAR}` / `${file:...}` where its reason held the value
    they expanded to: a value from the environment or a file may be a secret written under the
    wrong key (a password in a URL), and errors go to logs."""
    found: list[tuple[str, str]] = []
    token = _EXPANDED.set(found)
    try:
        yield
    except ConfigError as exc:
        reason = exc.reason
        for value, source in sorted(found, key=lambda pair: len(pair[0]), reverse=True):
            for form in (value, repr(value)[1:-1]):
                reason = reason.replace(form, source)
        if reason == exc.reason:
            raise
        raise ConfigError(exc.path, reason, source=exc.source) from None
    finally:
        _EXPANDED.reset(token)


def read_secret_file(file: str, default: str | None, path: str) -> str:
    """The content of `${file:FILE}` (one trailing newline stripped), or `default` when the
    file is missing or empty and a default is given. Never puts the content in an error."""
    if not file.startswith("/"):
        raise ConfigError(path, f"${{file:{file}}}: the path must be absolute (e.g. /etc/siemgate/secrets/KEY)")
    try:
        with open(file, "rb") as handle:
            data = handle.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        if default is not None:
            return default
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(path, f"secret file {file} cannot be read ({reason}): mount it (a Secret key), or "
                                f"write ${{file:{file}:-default}} to give a default") from None
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise ConfigError(path, f"secret file {file} is larger than {MAX_SECRET_FILE_BYTES} bytes: not a secret")
    try:
        value = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(path, f"secret file {file} is not UTF-8 text") from None
    if value.endswith("\r\n"):
        value = value[:-2]
    elif value.endswith("\n"):
        value = value[:-1]
    if value == "" and default is not None:
        return default
    return value


def secret_files(text: str) -> tuple[str, ...]:
    """The files a config text refers to with `${file:...}`, in order, each once (hot reload
    watches them with the config file)."""
    found: dict[str, None] = {}
    for match in _VAR.finditer(text):
        if match.group(3) is not None:
            found.setdefault(match.group(3), None)
    return tuple(found)


def build(cls: type[T], data: object, environ: Mapping[str, str], path: str = "") -> T:
    """Build dataclass `cls` from `data`, validating every key and value."""
    return typing.cast(T, _convert(cls, data, environ, path))


def _describe(path: str) -> str:
    return path or "the top level"


def _convert(tp: Any, value: object, environ: Mapping[str, str], path: str) -> object:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType) and tp != NetworkType:
        # Each option expands `${VAR}` itself: expanding here too would expand the value twice
        # (a `$$` escape, or a secret's value that holds `${...}`, would be expanded again).
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, environ, path)
            except ConfigError as exc:
                errors.append((option, exc))
        if isinstance(value, dict):  # a mapping: what its mapping option found wrong inside it
            for option, error in errors:
                if dataclasses.is_dataclass(option) or get_origin(option) is dict:
                    raise error
        raise errors[0][1]
    shown = value  # what an error shows: the text as written, never what a `${...}` expanded to
    if isinstance(value, str) and tp is not Secret:
        value = expand(value, environ, path)
    if tp is Any:
        return value
    if tp == NetworkType:
        if not isinstance(value, str):
            raise ConfigError(path, f"must be a CIDR such as 10.0.0.0/8, not {_show(shown)}")
        try:
            return ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ConfigError(path, f"{shown!r} is not a CIDR such as 10.0.0.0/8 or 2001:db8::/32") from None
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            choices = ", ".join(repr(a) for a in allowed)
            raise ConfigError(path, f"must be one of {choices}, not {_show(shown)}")
        return value
    if origin is tuple:
        item_type = get_args(tp)[0]
        if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
            raise ConfigError(path, f"must be a list, not {_show(shown)}")
        return tuple(_convert(item_type, v, environ, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(path, f"must be a mapping, not {_show(shown)}")
        key_type, value_type = get_args(tp)
        return {
            _convert(key_type, k, environ, f"{path}.{k}"): _convert(value_type, v, environ, f"{path}.{k}")
            for k, v in value.items()
        }
    if dataclasses.is_dataclass(tp):
        return _build_dataclass(typing.cast(type, tp), value, environ, path)
    if tp is Secret:
        if not isinstance(value, str):
            raise ConfigError(path, "must be a string")
        secret = Secret(expand(value, environ, path))
        register(secret)
        return secret
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ConfigError(path, f"must be true or false, not {_show(shown)}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(path, f"must be an integer, not {_show(shown)}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        raise ConfigError(path, f"must be an integer, not {_show(shown)}")
    if tp is float:
        number: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            with contextlib.suppress(ValueError):
                number = float(value)
        if number is not None and math.isfinite(number):
            return number
        if number is not None:  # .nan, .inf: every comparison the checks make would pass or fail wrongly
            raise ConfigError(path, f"must be a finite number, not {_show(shown)}")
        raise ConfigError(path, f"must be a number, not {_show(shown)}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(path, f"must be a string, not {_show(shown)}")
    raise TypeError(f"config loader cannot build {tp!r} at {path}")  # a bug in siemgate.config



def _build_dataclass(cls: type, value: object, environ: Mapping[str, str], path: str) -> object:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError(path, f"must be a mapping, not {_show(value)}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, object] = {}
    for key, raw in value.items():
        child = f"{path}.{key}" if path else str(key)
        if key not in fields:
            known = ", ".join(sorted(fields))
            close = difflib.get_close_matches(str(key), fields, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(child, f"unknown key (known keys here: {known}){hint}")
        kwargs[key] = _convert(hints[key], raw, environ, child)
    for name, field in fields.items():
        if name not in kwargs and field.default is dataclasses.MISSING and (
            field.default_factory is dataclasses.MISSING
        ):
            raise ConfigError(f"{path}.{name}" if path else name, "is required")
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        if path and not exc.path.startswith(path):
            raise ConfigError(f"{path}.{exc.path}" if exc.path else path, exc.reason) from None
        raise
    except ValueError as exc:
        raise ConfigError(_describe(path), str(exc)) from None


def _show(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
