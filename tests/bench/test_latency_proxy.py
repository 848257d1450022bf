"""``bench.latency_proxy``: bytes arrive whole, in order, a round trip later."""

from __future__ import annotations

import asyncio
import contextlib
import time

from bench.latency_proxy import serve
from tools.broker import free_port


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1 << 16):
        writer.write(data)
        await writer.drain()
    writer.close()


async def test_what_goes_through_comes_back_whole_and_a_round_trip_later() -> None:
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    target = server.sockets[0].getsockname()[1]
    port = free_port()
    relay = asyncio.create_task(serve(port, target, rtt=0.05))
    try:
        for _ in range(100):  # until it listens
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.01)
        chunks = [b"MAIL FROM:<a@b.c>\r\n", b"x" * 200_000, b".\r\n"]
        started = time.monotonic()
        for chunk in chunks:
            writer.write(chunk)
        back = await reader.readexactly(sum(map(len, chunks)))
        took = time.monotonic() - started
        writer.close()
    finally:
        relay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay
        server.close()
    assert back == b"".join(chunks)
    assert took >= 0.05  # each way waits half the round trip; never less
