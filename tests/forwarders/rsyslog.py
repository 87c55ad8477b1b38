"""A private rsyslogd for the syslog sink tests: a real receiver, not a stand-in.

`Rsyslog.start()` runs `rsyslogd -n -f CONF -i PIDFILE` in the foreground with its own work
directory, listening on 127.0.0.1 only:

- `tcp_port`: imtcp, plain (octet-counted and LF-framed frames both accepted);
- `udp_port`: imudp;
- `tls_port`: imtcp over TLS (rsyslog-gnutls, `gtls`, mode 1, authMode `anon`: the server
  shows its certificate, clients need none);
- `mtls_port`: the same with authMode `x509/certvalid`: clients must show a certificate
  issued by the test CA;
- with `relp=True` (rsyslog-relp): `relp_port`, imrelp plain, and `relp_tls_port`, imrelp
  with `tls="on"` (librelp's TLS, the same server certificate; authMode `name`: clients must
  show a certificate of the test CA for client.siemgate.test, `client_cert`). Their ruleset
  runs on a Direct queue, so rsyslog writes a message to the capture file before imrelp
  answers it `rsp 200`: what was acknowledged survives a SIGKILL (page cache), which is the
  receiver's part of RELP's promise (rsyslog's default in-memory main queue would lose
  acknowledged messages to a SIGKILL, a property of that configuration, not of RELP).

Certificates come from a `trustme` CA: the server's is valid for `localhost` only (so a
client that connects to 127.0.0.1 and checks the name must refuse it). Whatever rsyslog
receives is written, one JSON object per line, with the fields it parsed (`pri`,
`facility`, `severity`, `app_name`, `msgid`, `sd`, `msg`, `raw` ...); control-character
escaping on receive is off, so what arrived is what is written (JSON-escaped).

`start()` waits until every port is bound (read from /proc/net, bounded; no probe
connections); `stop()` sends SIGTERM, then SIGKILL after a grace period, and waits; `kill()`
sends SIGKILL at once; `freeze()` SIGSTOP (a stalled receiver).
`running_rsyslog()` skips the test with the reason when rsyslogd (or its TLS driver) is
missing, and fails it under CI=true. `make_event()` builds the normalized events the syslog
tests send, the way the forwarder does: a record from `make_record`, then `Normalizer`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
import trustme

from siemgate.forwarders.normalize import NormalizedEvent, Normalizer
from siemgate.record import Kind, Severity, make_record
from tests.support import AppendedLines

# Every character the formats must escape or survive, in one string.
AWKWARD = 'pipe| eq= back\\ br] quote" nl\nnl cr\rcr tab\ttab é 日本 🙂'

STARTUP_SECONDS = 15.0
STOP_SECONDS = 10.0

_FIELDS = (
    ("pri", "pri"),
    ("facility", "syslogfacility"),
    ("severity", "syslogseverity"),
    ("version", "protocol-version"),
    ("hostname", "hostname"),
    ("app_name", "app-name"),
    ("procid", "procid"),
    ("msgid", "msgid"),
    ("tag", "syslogtag"),
    ("sd", "structured-data"),
    ("msg", "msg"),
    ("raw", "rawmsg"),
    ("input", "inputname"),
)


# What rsyslogd logs when an input cannot start (e.g. rsyslog-gnutls missing): give up at once.
_FATAL = ("could not load module", "could not create listener", "imrelp: invalid")


class RsyslogUnavailable(Exception):
    pass


def rsyslogd_binary() -> str:
    found = shutil.which("rsyslogd") or next(
        (p for p in ("/usr/sbin/rsyslogd", "/sbin/rsyslogd") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise RsyslogUnavailable("rsyslogd is not installed (apt-get install rsyslog rsyslog-gnutls rsyslog-relp)")
    return found


def _free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bound_ports(protocol: str) -> set[int]:
    """Ports bound on 127.0.0.1/0.0.0.0 (TCP: listening) per /proc/net."""
    ports = set()
    with contextlib.suppress(FileNotFoundError), open(f"/proc/net/{protocol}") as table:
        next(table)
        for line in table:
            columns = line.split()
            local, state = columns[1], columns[3]
            if protocol == "tcp" and state != "0A":  # 0A: LISTEN
                continue
            ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


@dataclass
class Rsyslog:
    directory: Path
    tcp_port: int = field(default_factory=lambda: _free_port(socket.SOCK_STREAM))
    udp_port: int = field(default_factory=lambda: _free_port(socket.SOCK_DGRAM))
    tls_port: int = field(default_factory=lambda: _free_port(socket.SOCK_STREAM))
    mtls_port: int = field(default_factory=lambda: _free_port(socket.SOCK_STREAM))
    relp: bool = False
    relp_port: int = field(default_factory=lambda: _free_port(socket.SOCK_STREAM))
    relp_tls_port: int = field(default_factory=lambda: _free_port(socket.SOCK_STREAM))
    process: subprocess.Popen[bytes] | None = None
    _messages: AppendedLines[dict[str, Any]] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "work").mkdir(exist_ok=True)
        self.ca = trustme.CA()
        self.ca_file = self.directory / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        server = self.ca.issue_cert("localhost")
        server.cert_chain_pems[0].write_to_path(str(self.directory / "server.pem"))
        server.private_key_pem.write_to_path(str(self.directory / "server.key"))
        client = self.ca.issue_cert("client.siemgate.test")
        self.client_cert = self.directory / "client.pem"
        self.client_key = self.directory / "client.key"
        client.cert_chain_pems[0].write_to_path(str(self.client_cert))
        client.private_key_pem.write_to_path(str(self.client_key))
        self.received = self.directory / "received.jsonl"
        self.log = self.directory / "rsyslogd.log"
        self.config = self.directory / "rsyslog.conf"
        self.config.write_text(self._config())

    def _config(self) -> str:
        d = self.directory
        template = "\n".join(f'  property(outname="{out}" name="{name}" format="jsonf")' for out, name in _FIELDS)
        gtls = 'streamDriver.name="gtls" streamDriver.mode="1"'
        relp = ""
        if self.relp:
            relp = f"""
module(load="imrelp")
input(type="imrelp" address="127.0.0.1" port="{self.relp_port}" name="relp" ruleset="relp")
input(type="imrelp" address="127.0.0.1" port="{self.relp_tls_port}" name="relp-tls" ruleset="relp"
      tls="on" tls.caCert="{self.ca_file}" tls.myCert="{d}/server.pem"
      tls.myPrivKey="{d}/server.key" tls.authMode="name" tls.permittedPeer=["client.siemgate.test"])
ruleset(name="relp" queue.type="Direct") {{
  action(type="omfile" file="{self.received}" template="fields")
}}
"""
        return f"""
global(workDirectory="{d}/work" maxMessageSize="64k"
       parser.escapeControlCharactersOnReceive="off"
       defaultNetstreamDriverCAFile="{self.ca_file}"
       defaultNetstreamDriverCertFile="{d}/server.pem"
       defaultNetstreamDriverKeyFile="{d}/server.key")
module(load="imtcp" maxSessions="200")
module(load="imudp")
input(type="imtcp" address="127.0.0.1" port="{self.tcp_port}" name="tcp" ruleset="capture")
input(type="imudp" address="127.0.0.1" port="{self.udp_port}" name="udp" ruleset="capture")
input(type="imtcp" address="127.0.0.1" port="{self.tls_port}" name="tls" ruleset="capture"
      {gtls} streamDriver.authMode="anon")
input(type="imtcp" address="127.0.0.1" port="{self.mtls_port}" name="mtls" ruleset="capture"
      {gtls} streamDriver.authMode="x509/certvalid")
template(name="fields" type="list" option.jsonf="on") {{
{template}
}}
ruleset(name="capture") {{
  action(type="omfile" file="{self.received}" template="fields")
}}
""" + relp

    def start(self) -> None:
        """Start rsyslogd and wait until all four ports are bound."""
        assert self.process is None, "already running"
        binary = rsyslogd_binary()
        check = subprocess.run([binary, "-N1", "-f", str(self.config)], capture_output=True, text=True, check=False)
        if check.returncode != 0:  # e.g. rsyslog-gnutls missing: say so now, not after a timeout
            raise RsyslogUnavailable(f"rsyslogd refuses the test config: {check.stdout}{check.stderr}")
        pidfile = self.directory / "rsyslogd.pid"
        pidfile.unlink(missing_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [binary, "-n", "-f", str(self.config), "-i", str(pidfile)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + STARTUP_SECONDS
        tcp_ports = {self.tcp_port, self.tls_port, self.mtls_port}
        if self.relp:
            tcp_ports |= {self.relp_port, self.relp_tls_port}
        while not (tcp_ports <= _bound_ports("tcp") and self.udp_port in _bound_ports("udp")):
            if self.process.poll() is not None:
                self.process = None
                raise RsyslogUnavailable(f"rsyslogd exited at startup: {self.log.read_text()[-2000:]}")
            if any(sign in self.log.read_text() for sign in _FATAL):
                self.stop()
                raise RsyslogUnavailable(f"rsyslogd cannot listen: {self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RsyslogUnavailable(f"rsyslogd did not listen within {STARTUP_SECONDS}s: {self.log.read_text()}")
            time.sleep(0.01)

    def stop(self) -> None:
        """SIGTERM (rsyslogd flushes its output and closes its connections), then SIGKILL."""
        process, self.process = self.process, None
        if process is None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def freeze(self) -> None:
        """SIGSTOP: a stalled receiver (connections stay open, nothing is read or answered)."""
        assert self.process is not None, "not running"
        self.process.send_signal(signal.SIGSTOP)

    def kill(self) -> None:
        """SIGKILL: no flush, no serverclose, connections reset by the kernel."""
        process, self.process = self.process, None
        if process is not None:
            process.kill()
            process.wait()

    def messages(self) -> list[dict[str, Any]]:
        # Complete lines only: rsyslog may be writing the last one. Each parsed once, however
        # often a test polls (AppendedLines).
        if self._messages is None:
            self._messages = AppendedLines(self.received, orjson.loads)
        return self._messages.read()

    async def wait_for(
        self, count: int, match: Callable[[dict[str, Any]], bool] = lambda m: True, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """The received messages that `match`, once there are `count` of them (rsyslog writes
        asynchronously). Fails after `timeout` seconds with what did arrive."""
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.messages() if match(m)]
            if len(found) >= count:
                return found
            if any(sign in self.log.read_text() for sign in _FATAL):
                self.stop()
                raise RsyslogUnavailable(f"rsyslogd cannot listen: {self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} messages, got {len(found)}: {found}\n{self.log.read_text()}")
            await anyio.sleep(0.01)


def unavailable(reason: str) -> None:
    """Skip the test, or fail it under CI=true (where rsyslog is installed on purpose)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"rsyslogd needed under CI=true: {reason}")
    pytest.skip(f"no usable rsyslogd: {reason}")


@contextlib.contextmanager
def running_rsyslog(directory: Path, *, relp: bool = False) -> Iterator[Rsyslog]:
    """A started rsyslogd, stopped when the block ends; skips (fails under CI) if unusable."""
    server = None
    try:
        server = Rsyslog(directory, relp=relp)
        server.start()
    except RsyslogUnavailable as exc:
        unavailable(str(exc))
    assert server is not None
    try:
        yield server
    finally:
        server.stop()


def make_event(
    event: Any = None,
    *,
    severity: Severity = "high",
    kind: Kind = "event",
    integration: str = "appsec",
    event_id: str = "evt-1",
    received_at: str = "2026-11-28T21:00:00.123456Z",
) -> NormalizedEvent:
    """A NormalizedEvent as a forwarder gets it (record bytes -> Normalizer)."""
    if event is None:
        event = {"id": event_id, "severity": severity}
    record = make_record(
        prefix="t", event=event, kind=kind, integration=integration, severity=severity, event_id=event_id,
        received_at=received_at, batch="batch-1", seq=0, peer="127.0.0.1",
    )
    return Normalizer().normalize(record.value)
