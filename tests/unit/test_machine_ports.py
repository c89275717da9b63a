"""Host port choice: free, distinct, outside the ephemeral ranges, never another machine's."""

from __future__ import annotations

import random
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolbox.errors import MachineError
from toolbox.machine.ports import PORT_RANGE, choose_ports, is_free


def test_a_listening_port_is_not_free() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        assert not is_free(port)
    assert is_free(port)


def test_ports_come_from_below_the_ephemeral_ranges() -> None:
    ports = choose_ports(4)
    assert len(set(ports)) == 4
    assert all(PORT_RANGE[0] <= p < PORT_RANGE[1] < 32768 for p in ports)
    assert all(is_free(p) for p in ports)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32), st.sets(st.integers(20000, 20020), max_size=15))
def test_excluded_and_taken_ports_are_skipped(seed: int, exclude: set[int]) -> None:
    rng = random.Random(seed)
    ports = choose_ports(3, exclude=exclude, port_range=(20000, 20030), rng=rng)
    assert len(set(ports)) == 3 and not set(ports) & exclude


def test_a_port_in_use_is_never_chosen() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        taken = sock.getsockname()[1]
        ports = choose_ports(1, port_range=(taken, taken + 2), rng=random.Random(1))
        assert ports == [taken + 1]


def test_no_free_port_says_what_to_do() -> None:
    with pytest.raises(MachineError) as info:
        choose_ports(2, exclude={20000}, port_range=(20000, 20002))
    assert info.value.hint
