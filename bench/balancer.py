"""A tiny round-robin TCP balancer for the scale-out benchmark (what a Kubernetes Service does
for the ingest replicas): each new connection goes to the next upstream in turn.

    python bench/balancer.py --port 8080 --upstream 127.0.0.1:8081 --upstream 127.0.0.1:8082

Prints `ready` once listening. Loopback tooling, not a production proxy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal

CHUNK = 256 * 1024


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def serve(port: int, upstreams: list[tuple[str, int]]) -> None:
    turn = itertools.cycle(upstreams)

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, upstream_port = next(turn)
        try:
            up_reader, up_writer = await asyncio.open_connection(host, upstream_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(accept, "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", action="append", required=True, metavar="HOST:PORT")
    args = parser.parse_args()
    upstreams = [(u.rsplit(":", 1)[0], int(u.rsplit(":", 1)[1])) for u in args.upstream]
    try:
        import uvloop

        uvloop.run(serve(args.port, upstreams))
    except ImportError:
        asyncio.run(serve(args.port, upstreams))


if __name__ == "__main__":
    main()
