#!/usr/bin/env python3
"""TCP forwarders from the project's container network to services on this machine's loopback.

    loopback_forward.py --listen 10.89.0.1 --allow 10.89.0.0/24 --port 6379 --port 4566

For each --port, listens on LISTEN:PORT (the bridge address of the container network that
scripts/sam-local.sh created) and relays each connection to 127.0.0.1:PORT. A connection whose
peer is not inside --allow is closed at once: only the script's own containers get through.
Runs until it is sent SIGTERM (by PID, by whoever started it).

Why it exists: Podman 4.3's Docker API puts every container SAM creates on a bridge network (it
ignores containers.conf's netns there), so the containers cannot reach 127.0.0.1 of the host,
where the local stack listens.
"""
import argparse
import asyncio
import ipaddress
import signal
import socket
import sys

# Linux IP_FREEBIND: bind the bridge address before the bridge exists (Podman brings the
# interface up with the first container on the network).
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:  # the other direction may have closed it already
            pass


def handler(port, allowed):
    async def handle(reader, writer):
        peer = writer.get_extra_info("peername")
        if not peer or ipaddress.ip_address(peer[0]) not in allowed:
            print(f"loopback_forward: refused {peer} on :{port}", file=sys.stderr, flush=True)
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError as e:
            print(f"loopback_forward: 127.0.0.1:{port}: {e}", file=sys.stderr, flush=True)
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
    return handle


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", required=True, help="the container network's gateway address")
    ap.add_argument("--allow", required=True, help="the container network (CIDR) allowed to connect")
    ap.add_argument("--port", action="append", type=int, required=True)
    args = ap.parse_args()
    allowed = ipaddress.ip_network(args.allow)
    servers = []
    for port in args.port:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
        sock.bind((args.listen, port))
        servers.append(await asyncio.start_server(handler(port, allowed), sock=sock))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"loopback_forward: {args.listen} ports {args.port} -> 127.0.0.1, from {allowed} only", flush=True)
    await stop.wait()
    for server in servers:
        server.close()


if __name__ == "__main__":
    asyncio.run(main())
