#!/usr/bin/env python3
"""A TCP relay on loopback that counts the bytes going each way (stdlib only).

    python3 bench/relay.py TARGET_PORT PORTS_FILE [DELAY_MS]

Listens on two free ports of 127.0.0.1 and writes "RELAY_PORT CONTROL_PORT" to PORTS_FILE:
every connection to RELAY_PORT is relayed to 127.0.0.1:TARGET_PORT; a connection to
CONTROL_PORT gets one line "UP DOWN", the bytes relayed so far from clients to the target and
back (payload only: HTTP headers are counted, TCP/IP headers are not).

With DELAY_MS, every chunk is delivered DELAY_MS after it arrived, each way (a round trip of
twice that), pipelined: chunks in flight do not wait for each other, so bandwidth stays what
it was and only latency is added. A new connection costs one more round trip before its
first byte reaches the target, as TCP's handshake does over a real link.

With RELAY_LOG=FILE in its environment, it also appends one line per HTTP request it relays
to the target: "MS CONN METHOD PATH", the time in milliseconds since the relay started, when
the request arrived (before any delay), and the connection's number. That shows which of a
server's requests to its store wait for each other (bench/far.sh's S3 round trips). With
RELAY_LOG_ANSWERS=1 as well, it also appends "MS CONN ANSWER" when an answer's first bytes
come back from the target (before the delay): bench/s3-waves.sh pairs them with the requests
of their connection, in order, to tell which requests went out after which answers. With
RELAY_EPOCH=SECONDS (a `date +%s.%N`), the milliseconds count from that moment instead, so
that relays started apart, logging into one file, share a clock (bench/far-hypha.sh).

The benchmark reads the counters before and after a git command and takes the difference:
bytes are counted as they pass, so once the command has exited every byte it sent or
received has been counted. Runs until killed.
"""

import asyncio
import itertools
import os
import sys
import time

totals = {"up": 0, "down": 0}
METHODS = (b"GET ", b"PUT ", b"POST ", b"HEAD ", b"DELETE ")
START = time.monotonic()
if os.environ.get("RELAY_EPOCH"):
    START -= time.time() - float(os.environ["RELAY_EPOCH"])
LOG = open(os.environ["RELAY_LOG"], "a", buffering=1) if os.environ.get("RELAY_LOG") else None
LOG_ANSWERS = LOG is not None and os.environ.get("RELAY_LOG_ANSWERS") == "1"
connections = itertools.count(1)


def log_request(conn: int, data: bytes) -> None:
    """A line for a chunk that starts an HTTP request (its first line only)."""
    if LOG is not None and data.startswith(METHODS):
        line = data.split(b"\r\n", 1)[0].decode("latin-1").rsplit(" ", 1)[0]
        LOG.write("%d %d %s\n" % ((time.monotonic() - START) * 1000, conn, line))


def log_answer(conn: int, data: bytes) -> None:
    """A line for a chunk that starts an HTTP answer."""
    if LOG_ANSWERS and data.startswith(b"HTTP/"):
        LOG.write("%d %d ANSWER\n" % ((time.monotonic() - START) * 1000, conn))


async def pipe(reader, writer, key, delay=0.0, not_before=0.0, conn=0):
    """Copy reader to writer; with a delay, each chunk leaves `delay` seconds after it came
    (and not before `not_before`, the end of the emulated handshake), in order, pipelined."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def deliver():
        try:
            while True:
                due, data = await queue.get()
                if data is None:
                    break
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                writer.close()
            except (ConnectionError, OSError):
                pass

    sender = asyncio.ensure_future(deliver())
    try:
        while True:
            data = await reader.read(1 << 16)
            if not data:
                break
            totals[key] += len(data)
            if key == "up":
                log_request(conn, data)
            else:
                log_answer(conn, data)
            queue.put_nowait((max(loop.time(), not_before) + delay, data))
    except (ConnectionError, OSError):
        pass
    finally:
        queue.put_nowait((0, None))
        await sender


async def relay(target_port, delay, client_reader, client_writer):
    # The client's first byte could leave only after the handshake's round trip.
    not_before = asyncio.get_running_loop().time() + 2 * delay
    try:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
    except OSError:
        client_writer.close()
        return
    conn = next(connections)
    await asyncio.gather(
        pipe(client_reader, server_writer, "up", delay, not_before, conn),
        pipe(server_reader, client_writer, "down", delay, conn=conn),
    )


async def control(_reader, writer):
    writer.write(b"%d %d\n" % (totals["up"], totals["down"]))
    await writer.drain()
    writer.close()


async def main():
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: relay.py TARGET_PORT PORTS_FILE [DELAY_MS]")
    target_port, ports_file = int(sys.argv[1]), sys.argv[2]
    delay = float(sys.argv[3]) / 1000 if len(sys.argv) == 4 else 0.0
    data = await asyncio.start_server(
        lambda r, w: relay(target_port, delay, r, w), "127.0.0.1", 0
    )
    ctl = await asyncio.start_server(control, "127.0.0.1", 0)
    ports = (data.sockets[0].getsockname()[1], ctl.sockets[0].getsockname()[1])
    with open(ports_file + ".tmp", "w") as f:
        f.write("%d %d\n" % ports)


    os.replace(ports_file + ".tmp", ports_file)
    async with data, ctl:
        await asyncio.gather(data.serve_forever(), ctl.serve_forever())


if __name__ == "__main__":
    asyncio.run(main())
