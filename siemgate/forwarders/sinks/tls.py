"""Client-side TLS for every sink: one way to build the context, one way to read its failures.

A certificate that fails verification, a server refusing our client certificate, or TLS
files that cannot be loaded are `SinkAuthError`s: retrying cannot help until an operator
acts. Certificate files are read each time a context is built, so a sink that builds one
per (re)connect picks up rotated certificates.
"""

from __future__ import annotations

import ssl
from typing import Final

from siemgate.errors import RetryableSinkError, SinkAuthError
from siemgate.forwarders.sinks.base import TlsSettings

# TLS alerts by which a server refuses our certificate (OpenSSL reason names).
CERT_REFUSED: Final = frozenset({
    "SSLV3_ALERT_BAD_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_UNKNOWN", "SSLV3_ALERT_CERTIFICATE_EXPIRED",
    "SSLV3_ALERT_CERTIFICATE_REVOKED", "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE", "TLSV1_ALERT_UNKNOWN_CA",
    "TLSV1_ALERT_ACCESS_DENIED", "TLSV13_ALERT_CERTIFICATE_REQUIRED",
})  # fmt: skip


def client_context(tls: TlsSettings, target: str) -> ssl.SSLContext:
    """A context verifying the server (`tls.ca_file`, else the system's CAs, unless
    `verify: false`) and presenting `tls.cert`/`tls.key` when set. TLS 1.2 at least."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca_file)
        if tls.cert is not None:
            context.load_cert_chain(tls.cert, tls.key)
    except (OSError, ssl.SSLError) as exc:
        raise SinkAuthError(f"{target}: cannot load the TLS files (tls.ca_file, tls.cert, tls.key): {exc}") from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def tls_failure(target: str, host: str, exc: BaseException) -> SinkAuthError | None:
    """The SinkAuthError for a TLS failure an operator must fix, else None."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return SinkAuthError(
            f"{target}: the server's certificate is not trusted ({exc.verify_message}): tls.ca_file "
            f"must name the CA that issued it, and it must be valid for {host}"
        )
    if isinstance(exc, ssl.SSLError) and exc.reason in CERT_REFUSED:
        return SinkAuthError(f"{target}: the server refused our client certificate ({exc.reason})")
    return None


def connection_failure(target: str, host: str, what: str, exc: BaseException) -> RetryableSinkError | SinkAuthError:
    """A failed connection or write: an operator's problem (TLS trust) or a retryable one."""
    refused = tls_failure(target, host, exc)
    if refused is not None:
        return refused
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
    return RetryableSinkError(f"{target}: {what}: {reason}")
