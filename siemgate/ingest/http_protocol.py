"""uvicorn's httptools protocol with bounded request heads.

httptools keeps every header byte it is sent until the head ends, and uvicorn sets no limit:
one client could make the ingest hold a 200 MB header (measured: its RSS grew by 370 MB),
before any authentication. Here a head larger than `MAX_HEAD_BYTES`, or with more than
`MAX_HEADERS` headers, is answered 400 and the connection closed.
"""

from __future__ import annotations

from typing import Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from siemgate.errors import HeadTooLarge

# Far above any real request head (the sender's are < 1 KiB), and above the largest chunk a
# read returns, so a chunk holding a small head and the start of the body never trips it.
MAX_HEAD_BYTES: Final = 1024 * 1024
MAX_HEADERS: Final = 256


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    _head_bytes = 0
    _in_head = True
    _header_count = 0

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._in_head = False
                self.send_400_response("Request head too large.")
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        self._in_head = True
        self._header_count = 0
        super().on_message_begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > MAX_HEADERS:
            raise HeadTooLarge(f"more than {MAX_HEADERS} headers")  # httptools: a parser error, answered 400
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0
