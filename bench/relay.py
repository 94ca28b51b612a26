#!/usr/bin/env python3
"""A TCP relay on loopback that counts the bytes going each way (stdlib only).

    python3 bench/relay.py TARGET_PORT PORTS_FILE

Listens on two free ports of 127.0.0.1 and writes "RELAY_PORT CONTROL_PORT" to PORTS_FILE:
every connection to RELAY_PORT is relayed to 127.0.0.1:TARGET_PORT; a connection to
CONTROL_PORT gets one line "UP DOWN", the bytes relayed so far from clients to the target and
back (payload only: HTTP headers are counted, TCP/IP headers are not).

The benchmark reads the counters before and after a git command and takes the difference:
bytes are counted as they pass, so once the command has exited every byte it sent or
received has been counted. Runs until killed.
"""

import asyncio
import os
import sys

totals = {"up": 0, "down": 0}


async def pipe(reader, writer, key):
    try:
        while True:
            data = await reader.read(1 << 16)
            if not data:
                break
            totals[key] += len(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except (ConnectionError, OSError):
            pass


async def relay(target_port, client_reader, client_writer):
    try:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(
        pipe(client_reader, server_writer, "up"),
        pipe(server_reader, client_writer, "down"),
    )


async def control(_reader, writer):
    writer.write(b"%d %d\n" % (totals["up"], totals["down"]))
    await writer.drain()
    writer.close()


async def main():
    if len(sys.argv) != 3:
        sys.exit("usage: relay.py TARGET_PORT PORTS_FILE")
    target_port, ports_file = int(sys.argv[1]), sys.argv[2]
    data = await asyncio.start_server(lambda r, w: relay(target_port, r, w), "127.0.0.1", 0)
    ctl = await asyncio.start_server(control, "127.0.0.1", 0)
    ports = (data.sockets[0].getsockname()[1], ctl.sockets[0].getsockname()[1])
    with open(ports_file + ".tmp", "w") as f:
        f.write("%d %d\n" % ports)


    os.replace(ports_file + ".tmp", ports_file)
    async with data, ctl:
        await asyncio.gather(data.serve_forever(), ctl.serve_forever())


if __name__ == "__main__":
    asyncio.run(main())
