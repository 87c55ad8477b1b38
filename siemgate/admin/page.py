"""The status page's HTML: plain string templates, every value through `html.escape`.

No script at all; the style is one embedded sheet whose `<style>` carries the response's CSP
nonce. The page refreshes itself with `<meta http-equiv="refresh">`.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import quote

from siemgate.admin.status import IntegrationStatus, SinkStatus, SpoolStatus, Status
from siemgate.record import SEVERITIES
from siemgate.terminal import printable

REFRESH_SECONDS: Final = 30

_CSS: Final = """
:root { --ink: #1d2733; --muted: #5f6b7a; --line: #e3e7ed; --bg: #f3f5f8; --card: #ffffff;
  --navy: #15233b; --blue: #2457c5; --green: #1c7c3c; --green-bg: #e3f5e8; --amber: #8a5300;
  --amber-bg: #fff1d1; --red: #b4231b; --red-bg: #fde6e4; --grey-bg: #eceff3; }
* { box-sizing: border-box; }
html { font-size: 15px; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", "DejaVu Sans", Arial, sans-serif;
  line-height: 1.45; }
header { background: var(--navy); color: #fff; }
.bar { max-width: 1240px; margin: 0 auto; padding: 14px 28px; display: flex; align-items: center; gap: 18px; }
.brand { font-size: 1.25rem; font-weight: 700; letter-spacing: .2px; }
.brand span { font-weight: 400; opacity: .75; }
.chips { display: flex; gap: 8px; flex-wrap: wrap; }
.chip { background: rgba(255,255,255,.12); border-radius: 999px; padding: 2px 10px; font-size: .82rem; }
.spacer { flex: 1; }
.updated { font-size: .82rem; opacity: .8; text-align: right; }
main { max-width: 1240px; margin: 0 auto; padding: 22px 28px 40px; }
h1 { font-size: 1.35rem; margin: 0 0 4px; }
h2 { font-size: 1.05rem; margin: 28px 0 10px; }
.lede { color: var(--muted); margin: 0 0 18px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 14px; }
.tile, .card { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  box-shadow: 0 1px 2px rgba(20, 30, 50, .05); }
.tile { padding: 12px 16px; }
.tile .label { color: var(--muted); font-size: .8rem; text-transform: uppercase; letter-spacing: .5px; }
.tile .value { font-size: 1.6rem; font-weight: 650; margin-top: 2px; font-variant-numeric: tabular-nums; }
.tile .sub { font-size: .85rem; color: var(--muted); }
.tile .sub.bad { color: var(--red); } .tile .sub.warn { color: var(--amber); } .tile .sub.ok { color: var(--green); }
.card { overflow: hidden; }
table { width: 100%; border-collapse: collapse; }
th { text-align: left; font-size: .75rem; text-transform: uppercase; letter-spacing: .5px; color: var(--muted);
  background: #f8f9fb; font-weight: 600; padding: 9px 14px; border-bottom: 1px solid var(--line); }
td { padding: 11px 14px; border-bottom: 1px solid var(--line); vertical-align: top; }
.nowrap { white-space: nowrap; }
td.confirmation { width: 44%; }
tr:last-child td { border-bottom: 0; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.name { font-weight: 650; }
.small { font-size: .82rem; color: var(--muted); }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace;
  font-size: .82rem; }
.link { display: block; background: #f6f7f9; border: 1px solid var(--line); border-radius: 6px; padding: 5px 8px;
  word-break: break-all; }
.pending-link { display: flex; gap: 10px; align-items: flex-start; margin-top: 4px; }
.pending-link .link { flex: 1; }
.old-link { word-break: break-all; color: var(--muted); }
.badge { display: inline-flex; align-items: center; gap: 6px; border-radius: 999px; padding: 2px 10px;
  font-size: .8rem; font-weight: 600; white-space: nowrap; }
.badge::before { content: ""; width: 7px; height: 7px; border-radius: 50%; background: currentColor; }
.badge.ok { background: var(--green-bg); color: var(--green); }
.badge.warn { background: var(--amber-bg); color: var(--amber); }
.badge.bad { background: var(--red-bg); color: var(--red); }
.badge.muted { background: var(--grey-bg); color: var(--muted); }
.bad-text { color: var(--red); } .warn-text { color: var(--amber); } .zero { color: #9aa4b1; }
.error { color: var(--red); font-size: .82rem; margin: 6px 0 0; }
form.inline { display: inline; margin: 0; }
button { font: inherit; cursor: pointer; border-radius: 6px; border: 1px solid transparent; padding: 5px 14px;
  font-weight: 600; font-size: .88rem; }
button.primary { background: var(--blue); color: #fff; }
button.primary:hover { background: #1b47a6; }
button.ghost { background: transparent; color: #fff; border-color: rgba(255,255,255,.35); }
.flash { border-radius: 8px; padding: 10px 14px; margin: 0 0 18px; font-weight: 500; border: 1px solid; }
.flash.ok { background: var(--green-bg); color: var(--green); border-color: #b9e3c6; }
.flash.error { background: var(--red-bg); color: var(--red); border-color: #f4c1bc; }
.flash.info { background: #e8effc; color: var(--blue); border-color: #c5d5f5; }
.empty { padding: 16px; color: var(--muted); }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 6px 24px; margin: 0; padding: 14px 16px; }
dl.kv dt { color: var(--muted); } dl.kv dd { margin: 0; font-variant-numeric: tabular-nums; }
progress { width: 220px; height: 8px; margin-left: 10px; vertical-align: middle; border: 0; border-radius: 4px;
  background: var(--grey-bg); overflow: hidden; -webkit-appearance: none; appearance: none; }
progress::-webkit-progress-bar { background: var(--grey-bg); }
progress::-webkit-progress-value { background: var(--blue); }
progress::-moz-progress-bar { background: var(--blue); }
footer { color: var(--muted); font-size: .82rem; margin-top: 28px; }
.login { max-width: 420px; margin: 12vh auto; padding: 28px; }
.login h1 { margin-bottom: 6px; }
.login label { display: block; font-weight: 600; margin: 18px 0 6px; }
.login input { width: 100%; font: inherit; padding: 8px 10px; border: 1px solid #c8cfd9; border-radius: 6px; }
.login button { margin-top: 16px; width: 100%; padding: 9px; }
"""


@dataclass(frozen=True, slots=True)
class Flash:
    kind: Literal["ok", "error", "info"]
    text: str


def e(value: object) -> str:
    """HTML-escaped, and every unprintable character (ESC, bidi overrides, zero-width ones) shown
    as its escape, as the CLI shows it (siemgate.terminal): a link the operator judges before
    clicking Confirm cannot read as another host."""
    return html.escape(printable(value), quote=True)


def _document(title: str, nonce: str, body: str, *, refresh: bool = False) -> str:
    meta = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}; url=/">' if refresh else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="referrer" content="same-origin">{meta}'
        f"<title>{e(title)}</title>"
        f'<style nonce="{e(nonce)}">{_CSS}</style></head>\n'
        f"<body>{body}</body></html>\n"
    )


def login_page(nonce: str, error: str | None = None) -> str:
    problem = f'<p class="error" role="alert">{e(error)}</p>' if error else ""
    body = (
        '<main><div class="card login">'
        "<h1>siemgate status</h1>"
        '<p class="small">Log in with the admin token (<code>admin.token</code> in the siemgate config).</p>'
        f"{problem}"
        '<form method="post" action="/login">'
        '<label for="token">Admin token</label>'
        '<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>'
        '<button class="primary" type="submit">Log in</button>'
        "</form></div></main>"
    )
    return _document("siemgate status: log in", nonce, body)


def message_page(nonce: str, title: str, text: str) -> str:
    body = (f'<main><div class="card login"><h1>{e(title)}</h1><p>{e(text)}</p>'
            '<p><a href="/">Back to the status page</a></p></div></main>')
    return _document(f"siemgate status: {title}", nonce, body)


def status_page(status: Status, nonce: str, csrf: str | None, flash: Flash | None = None) -> str:
    """The page; `csrf` None (a Bearer request, no session): without its forms."""
    parts = [_header(status, csrf), "<main>"]
    if flash is not None:
        parts.append(f'<div class="flash {flash.kind}" role="status">{e(flash.text)}</div>')
    if status.state_error:
        parts.append(f'<div class="flash error" role="alert">{e(status.state_error)}</div>')
    parts.append(_tiles(status))
    if status.integrations is not None:
        parts.append("<h2>Integrations</h2>")
        parts.append(_integrations(status.integrations, csrf))
    if status.sinks is not None:
        parts.append("<h2>Sinks</h2>")
        parts.append(_sinks(status.sinks))
    if status.spool is not None:
        parts.append(f"<h2>{'Local spool' if status.spool.kind == 'spool' else 'Embedded log'}</h2>")
        parts.append(_spool(status.spool))
    parts.append(
        "<footer>Counts since this process started, activity over the last hour. JSON: "
        "<code>GET /api/status</code> with <code>Authorization: Bearer &lt;admin token&gt;</code>.</footer>"
    )
    parts.append("</main>")
    return _document(f"siemgate status: {status.hostname}", nonce, "".join(parts), refresh=True)


def _header(status: Status, csrf: str | None) -> str:
    chips = "".join(f'<span class="chip">{e(text)}</span>' for text in (
        f"siemgate {status.process}", status.hostname, f"v{status.version}"))
    updated = status.generated_at.replace("T", " ").replace("Z", " UTC")
    return (
        '<header><div class="bar">'
        '<div class="brand">siemgate <span>status</span></div>'
        f'<div class="chips">{chips}</div><div class="spacer"></div>'
        f'<div class="updated">Updated {e(updated)}<br>refreshes every {REFRESH_SECONDS} s</div>'
        f"{_logout(csrf)}</div></header>"
    )


def _logout(csrf: str | None) -> str:
    if csrf is None:
        return ""
    return ('<form class="inline" method="post" action="/logout">'
            f'<input type="hidden" name="csrf" value="{e(csrf)}">'
            '<button class="ghost" type="submit">Log out</button></form>')


def _tile(label: str, value: str, sub: str, tone: str = "") -> str:
    return (f'<div class="tile"><div class="label">{e(label)}</div><div class="value">{e(value)}</div>'
            f'<div class="sub {tone}">{e(sub)}</div></div>')


def _tiles(status: Status) -> str:
    tiles = []
    if status.integrations is not None:
        integrations = status.integrations
        pending = sum(1 for i in integrations if i.state == "pending")
        unlinked = sum(1 for i in integrations if i.state == "no_link")
        if pending:
            sub, tone = f"{pending} pending confirmation", "warn"
        elif unlinked:
            sub, tone = f"{unlinked} without a confirmation link", ""
        elif integrations:
            sub, tone = "all confirmed", "ok"
        else:
            sub, tone = "none configured", ""
        tiles.append(_tile("Integrations", str(len(integrations)), sub, tone))
        events = sum(i.events_last_hour for i in integrations)
        rejected = sum(i.rejections_last_hour for i in integrations)
        tiles.append(_tile("Events, last hour", _num(events), f"{_num(rejected)} requests rejected",
                           "bad" if rejected else ""))
    if status.sinks is not None:
        sinks = status.sinks
        down = sum(1 for s in sinks if s.state == "down")
        starting = sum(1 for s in sinks if s.state == "starting")
        if down:
            sub, tone = f"{down} down", "bad"
        elif starting:
            sub, tone = f"{starting} starting", "warn"
        else:
            sub, tone = "all up", "ok"
        tiles.append(_tile("Sinks", str(len(sinks)), sub, tone))
        lag = sum(s.lag_total for s in sinks)
        dead = sum(s.dead_lettered for s in sinks)
        tiles.append(_tile("Lag, all sinks", _num(lag), f"{_num(dead)} dead-lettered", "bad" if dead else ""))
    if status.spool is not None:
        spool = status.spool
        share = f"{spool.bytes / spool.max_bytes:.0%} of {_bytes(spool.max_bytes)}" if spool.max_bytes else "on disk"
        tone = _storage_tone(spool)
        if spool.kind == "spool":
            tiles.append(_tile("Spool", _bytes(spool.bytes), share, tone or ("warn" if spool.active else "")))
        else:
            tiles.append(_tile("Embedded log", _bytes(spool.bytes), share, tone))
    return f'<div class="tiles">{"".join(tiles)}</div>'


_STATE_BADGES: Final = {
    "pending": ("warn", "Pending"), "confirmed": ("ok", "Confirmed"), "no_link": ("muted", "No link yet"),
    "up": ("ok", "Up"), "down": ("bad", "Down"), "starting": ("muted", "Starting"),
    "spooling": ("warn", "Spooling: Kafka is late or away"), "idle": ("ok", "Idle: batches go straight to Kafka"),
}


def _badge(state: str) -> str:
    tone, text = _STATE_BADGES[state]
    return f'<span class="badge {tone}" data-state="{e(state)}">{e(text)}</span>'


def _integrations(integrations: Iterable[IntegrationStatus], csrf: str | None) -> str:
    rows = [
        "<tr><th>Integration</th><th>State</th><th>Last batch</th><th class=num>Events (1 h)</th>"
        "<th class=num>Rejected (1 h)</th><th>Confirmation</th></tr>"
    ]
    for i in integrations:
        if i.last_batch_at is None or i.last_batch_age_seconds is None:
            last = '<span class="zero">never</span>'
        else:
            last = f'{e(_age(i.last_batch_age_seconds))}<div class="small nowrap">{e(_when(i.last_batch_at))}</div>'
        batches = "1 batch" if i.batches_last_hour == 1 else f"{_num(i.batches_last_hour)} batches"
        events = f'{_num(i.events_last_hour)}<div class="small">{batches}</div>'
        if i.rejections_last_hour:
            codes = ", ".join(f"{code} \u00d7 {count}" for code, count in i.rejections_by_code.items())
            rejected = (f'<span class="bad-text">{_num(i.rejections_last_hour)}</span>'
                        f'<div class="small">{e(codes)}</div>')
        else:
            rejected = '<span class="zero">0</span>'
        rows.append(
            f'<tr id="integration-{e(i.name)}" data-integration="{e(i.name)}">'
            f'<td><div class="name">{e(i.name)}</div><div class="small mono nowrap">{e(i.path)}</div></td>'
            f"<td>{_badge(i.state)}</td><td>{last}</td><td class=num>{events}</td><td class=num>{rejected}</td>"
            f'<td class="confirmation">{_confirmation(i, csrf)}</td></tr>'
        )
    if len(rows) == 1:
        return '<div class="card"><div class="empty">No integration is configured.</div></div>'
    return f'<div class="card"><table>{"".join(rows)}</table></div>'


def _confirmation(i: IntegrationStatus, csrf: str | None) -> str:
    if i.state == "no_link":
        return f'<span class="small">mode {e(i.confirmation_mode)}: no confirmation message received</span>'
    link = f'<code class="link" data-link>{e(i.link)}</code>'
    if i.state == "confirmed":
        via = f" via {i.confirmed_via}" if i.confirmed_via else ""
        return (f'<div class="small">Confirmed{e(via)}, {e(_when(i.confirmed_at))}</div>'
                f'<code class="old-link" data-link>{e(i.link)}</code>')
    error = f'<p class="error">Last attempt failed: {e(i.last_error)}</p>' if i.last_error else ""
    received = (f'<div class="small">Link received {e(_when(i.link_received_at))}: requesting it activates the '
                "integration</div>")
    if csrf is None:
        return f'{received}<div class="pending-link">{link}</div>{error}'
    return (
        f'{received}<div class="pending-link">{link}'
        f'<form class="inline" method="post" action="/integrations/{quote(i.name, safe="")}/confirm">'
        f'<input type="hidden" name="csrf" value="{e(csrf)}">'
        f'<input type="hidden" name="link" value="{e(i.link_id)}">'
        f'<button class="primary" type="submit" data-confirm="{e(i.name)}">Confirm</button></form></div>{error}'
    )


def _sinks(sinks: Iterable[SinkStatus]) -> str:
    lag_heads = "".join(f"<th class=num>{'Lag ' if i == 0 else ''}{severity}</th>"
                        for i, severity in enumerate(SEVERITIES))
    rows = [
        "<tr><th>Sink</th><th>State</th><th class=num>Rate (1 min)</th>" + lag_heads +
        "<th class=num>Dead-lettered</th><th class=num>Delivered</th></tr>"
    ]
    for s in sinks:
        lags = "".join(f"<td class=num>{_count(s.lag.get(severity, 0), 'warn-text')}</td>"
                       for severity in SEVERITIES)
        rate = '<span class="zero">\u2014</span>' if s.rate_per_second is None else f"{_rate(s.rate_per_second)}/s"
        rows.append(
            f'<tr id="sink-{e(s.name)}" data-sink="{e(s.name)}">'
            f'<td><div class="name">{e(s.name)}</div><div class="small">{e(s.type)}</div></td>'
            f"<td>{_badge(s.state)}</td><td class=num>{rate}</td>{lags}"
            f"<td class=num>{_count(s.dead_lettered, 'bad-text')}</td><td class=num>{_count(s.delivered, '')}</td></tr>"
        )
    if len(rows) == 1:
        return '<div class="card"><div class="empty">No sink is configured.</div></div>'
    return f'<div class="card"><table>{"".join(rows)}</table></div>'


# A store this full (of its cap) is shown as a warning; at the cap, batches are answered 503.
STORAGE_WARN_SHARE = 0.8


def _storage_tone(spool: SpoolStatus) -> str:
    if spool.max_bytes and spool.bytes >= spool.max_bytes:
        return "bad"
    if spool.max_bytes and spool.bytes >= STORAGE_WARN_SHARE * spool.max_bytes:
        return "warn"
    return ""


def _spool(spool: SpoolStatus) -> str:
    if spool.max_bytes:
        share = min(1.0, spool.bytes / spool.max_bytes)
        meter = f'<progress max="1000" value="{share * 1000:.0f}">{share:.0%}</progress>'
        held = f"{e(_bytes(spool.bytes))} of {e(_bytes(spool.max_bytes))} ({share:.0%}){meter}"
    else:
        held = e(_bytes(spool.bytes))
    free = "not measured yet" if spool.free_bytes is None else _bytes(spool.free_bytes)
    storage = [("Free space on its file system", e(free))]
    if spool.max_bytes and spool.bytes >= spool.max_bytes:
        storage.append(("Full", '<span class="bad-text">new batches are answered 503 until space is freed</span>'))
    storage.append(("Batches refused (full)", _count(spool.refused_full, "bad-text")))
    if spool.kind == "embedded_log":
        items = [("File", f"<code>{e(spool.path)}</code>"), ("Size on disk (bus.max_bytes)", held), *storage,
                 ("Note", "records are deleted once every sink has passed them; a sink that is down holds them")]
    else:
        state = _badge("spooling" if spool.active else "idle")
        items = [("Directory", f"<code>{e(spool.path)}</code>"), ("State", state),
                 ("Events held", e(_num(spool.events or 0))), ("Bytes held (bus.spool.max_bytes)", held), *storage]
    rows = "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in items)
    return f'<div class="card"><dl class="kv">{rows}</dl></div>'


def _count(value: int, tone: str) -> str:
    return f'<span class="{tone}">{_num(value)}</span>' if value else '<span class="zero">0</span>'


def _num(value: int) -> str:
    return f"{value:,}"


def _rate(value: float) -> str:
    if value == 0:
        return "0"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _bytes(value: int) -> str:
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 86400:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} d ago"


def _when(iso: str | None) -> str:
    if not iso:
        return "?"
    # 2026-11-29T10:03:12.123456Z -> 2026-11-29 10:03:12 UTC
    return iso.replace("T", " ").split(".")[0].removesuffix("Z") + " UTC"
