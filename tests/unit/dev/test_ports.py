"""Free ports for the local services: below the ephemeral range, free, not excluded."""

from __future__ import annotations

import socket

import pytest

from metrify_dev import ports


@pytest.fixture(autouse=True)
def linux_default_range(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same ephemeral range on every host the tests run on."""
    monkeypatch.setattr(ports, "ephemeral_range", lambda: ports.LINUX_EPHEMERAL)


def test_a_free_port_is_below_the_ephemeral_range_and_can_be_bound() -> None:
    found = {ports.free_port() for _ in range(20)}
    assert all(ports.LOWEST <= port < ports.LINUX_EPHEMERAL[0] for port in found), found
    assert len(found) > 1  # drawn, not the first free one in order
    for port in found:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the services bind
            sock.bind((ports.HOST, port))


def test_a_port_in_use_or_excluded_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
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


def test_where_no_draw_is_free_the_kernel_chooses_but_never_an_excluded_port(monkeypatch: pytest.MonkeyPatch) -> None:
    offered = iter([40_001, 40_002])
    monkeypatch.setattr(ports._DRAW, "sample", lambda population, k: [])  # nothing free below the range
    monkeypatch.setattr(ports, "kernel_port", lambda host: next(offered))
    assert ports.free_port(exclude={40_001}) == 40_002
