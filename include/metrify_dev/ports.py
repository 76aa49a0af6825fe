"""Free loopback ports for the local services (the Kafka broker, Airflow's API server), picked
below the kernel's ephemeral port range.

A port found free is handed to a process that binds it a little later. A port from the ephemeral
range (what binding port 0 returns) may meanwhile become the source port of any outgoing
connection on the machine, another test worker's for one, and the bind then fails; the kernel
never hands out ports below that range by itself. Ports are drawn from the operating system's
randomness, so processes seeded alike (test workers) are unlikely to draw the same one; the short
gap between finding a port free and binding it remains.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Collection
from pathlib import Path

HOST = "127.0.0.1"
LOWEST = 20_000  # above the well-known ports and the busiest registered ones; a port in use is skipped
LINUX_EPHEMERAL = (32_768, 60_999)
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_TRIES = 200
_DRAW = random.SystemRandom()


def ephemeral_range() -> tuple[int, int]:
    """The ports the kernel gives out to outgoing connections and to binds to port 0."""
    try:
        low, high = map(int, _EPHEMERAL_RANGE.read_text().split())
    except (OSError, ValueError):
        return LINUX_EPHEMERAL
    return low, high


def is_free(port: int, host: str = HOST) -> bool:
    """Whether a server could bind `host:port` now (a port in TIME_WAIT counts as free, as it
    does for servers that set SO_REUSEADDR, as the broker and Airflow's API server do)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = HOST, exclude: Collection[int] = ()) -> int:
    """A port nothing is bound to at `host` and not in `exclude`: drawn below the ephemeral
    range; the kernel's choice where that range leaves no room below it or none of the draws
    was free."""
    low = ephemeral_range()[0]
    if low - LOWEST >= _TRIES:
        for port in _DRAW.sample(range(LOWEST, low), _TRIES):
            if port not in exclude and is_free(port, host):
                return port
    while True:
        port = kernel_port(host)
        if port not in exclude:
            return port


def kernel_port(host: str = HOST) -> int:
    """A free port of the kernel's choice (from the ephemeral range)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
