"""Free ports for the local services: below the ephemeral range, free, not excluded."""

from __future__ import annotations

import socket

from metrify_dev import ports


def test_a_free_port_is_below_the_ephemeral_range_and_can_be_bound() -> None:
    low, high = ports.ephemeral_range()
    assert ports.LOWEST < low <= high
    found = {ports.free_port() for _ in range(20)}
    assert all(ports.LOWEST <= port < low for port in found), found
    assert len(found) > 1  # drawn, not the first free one in order
    for port in found:
        with socket.socket() as sock:
            sock.bind((ports.HOST, port))


def test_a_port_in_use_or_excluded_is_skipped(monkeypatch) -> None:
    with socket.socket() as server:
        server.bind((ports.HOST, ports.free_port()))
        server.listen()
        busy = server.getsockname()[1]
        excluded = ports.free_port(exclude={busy})
        expected = ports.free_port(exclude={busy, excluded})
        # the draw offers the busy port first, then the excluded one
        monkeypatch.setattr(ports._DRAW, "sample", lambda population, k: [busy, excluded, expected])
        assert not ports.is_free(busy)
        assert ports.free_port(exclude={excluded}) == expected
    assert ports.is_free(busy)


def test_excluded_ports_are_not_handed_out_even_by_the_kernel(monkeypatch) -> None:
    monkeypatch.setattr(ports, "ephemeral_range", lambda: (ports.LOWEST + 10, 60_999))  # no room below
    first = ports.free_port()
    assert first >= ports.LOWEST + 10  # the kernel's choice
    assert ports.free_port(exclude={first}) != first
