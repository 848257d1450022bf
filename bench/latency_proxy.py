"""A TCP relay that adds a fixed delay each way: `python -m bench.latency_proxy`.

It stands for the network between a service and a server on another machine (an SMTP
relay in the next data centre, say): every byte arrives ``--rtt-ms`` / 2 after it was
sent, in both directions, however many are in flight, as on a link whose round trip is
that long. Used by ``bench.engagement_sender --rtt-ms`` in its own process, so its CPU is
not the benchmark's.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import uvloop


async def _carry(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy ``reader`` to ``writer``, each chunk ``delay`` seconds after it arrived."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, chunk = await queue.get()
            if (wait := due - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            if not chunk:
                writer.close()
                return
            writer.write(chunk)
            await writer.drain()

    delivering = asyncio.create_task(deliver())
    try:
        while True:
            chunk = await reader.read(1 << 16)
            queue.put_nowait((time.monotonic() + delay, chunk))
            if not chunk:
                break
        await delivering
    except (ConnectionError, OSError):
        delivering.cancel()
        writer.close()


async def serve(listen: int, target: int, rtt: float) -> None:
    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(_carry(reader, up_writer, rtt / 2), _carry(up_reader, writer, rtt / 2))

    server = await asyncio.start_server(relay, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--to", type=int, required=True, help="the server's local port")
    parser.add_argument("--rtt-ms", type=float, required=True)
    args = parser.parse_args()
    uvloop.run(serve(args.listen, args.to, args.rtt_ms / 1000))


if __name__ == "__main__":
    main()
