"""Host port choice: free, distinct, outside the ephemeral ranges, never another machine's."""

from __future__ import annotations

import random
import socket
from pathlib import Path

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


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
def test_the_process_holding_a_port_is_named_for_tcp_and_udp() -> None:
    """A real child process holds a TCP listener and a UDP socket; the conflict message can
    name it. A free port has no holder."""
    import subprocess
    import sys

    from toolbox.machine.ports import port_holder

    code = (
        "import socket,sys,time\n"
        "t=socket.create_server(('127.0.0.1',0))\n"
        "u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
        "u.bind(('127.0.0.1',0)); print(t.getsockname()[1],u.getsockname()[1],flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        tcp, udp = (int(x) for x in child.stdout.readline().split())
        for port, proto in ((tcp, "tcp"), (udp, "udp")):
            holder = port_holder(port, proto)
            assert holder is not None and holder.pid == child.pid, (proto, holder)
            assert holder.command.startswith("python")
            assert str(holder) == f"{holder.command} (pid {child.pid})"
    finally:
        child.kill()
        child.wait()
    assert port_holder(tcp, "tcp") is None
    with pytest.raises(ValueError):
        port_holder(80, "sctp")


# Output of `netstat -ano -p TCP` / `-p UDP` and `tasklist /FO CSV /NH` as Windows 11 prints
# them (the format documented by Microsoft; these commands do not exist on the CI machines).
NETSTAT_TCP = """
Active Connections

  Proto  Local Address          Foreign Address        State           PID
  TCP    0.0.0.0:135            0.0.0.0:0              LISTENING       1060
  TCP    127.0.0.1:8080         0.0.0.0:0              LISTENING       7312
  TCP    127.0.0.1:8081         127.0.0.1:50123        ESTABLISHED     7400
  TCP    [::]:5432              [::]:0                 LISTENING       5120
"""
NETSTAT_UDP = """
Active Connections

  Proto  Local Address          Foreign Address        State           PID
  UDP    0.0.0.0:5353           *:*                                    2212
  UDP    [::1]:1900             *:*                                    4040
"""
TASKLIST = '"nginx.exe","7312","Console","1","12,345 K"\n'


def test_windows_netstat_and_tasklist_parsing() -> None:
    from toolbox.machine.ports import parse_netstat_pid, parse_tasklist_name

    assert parse_netstat_pid(NETSTAT_TCP, 8080, "tcp") == 7312
    assert parse_netstat_pid(NETSTAT_TCP, 5432, "tcp") == 5120  # IPv6 any address
    assert parse_netstat_pid(NETSTAT_TCP, 8081, "tcp") is None  # a connection, not a listener
    assert parse_netstat_pid(NETSTAT_UDP, 5353, "udp") == 2212
    assert parse_netstat_pid(NETSTAT_UDP, 1900, "udp") == 4040
    assert parse_netstat_pid(NETSTAT_UDP, 8080, "tcp") is None
    assert parse_tasklist_name(TASKLIST) == "nginx.exe"
    assert parse_tasklist_name("INFO: No tasks are running which match the criteria.") is None
