"""The host agent's process-independent parts: its files, its health as other processes see
it (a real lock held by a real child process), bind checks against real sockets, and one
sync pass of the forward logic against the fake driver with recorded engine rows. The agent
against a real engine and a real QEMU machine is in tests/vm/test_agent.py."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.unit.machine_fakes import FakeDriver, FakeGuest
from toolbox.agent import state as agent_state
from toolbox.agent.runner import Agent, bind_problem
from toolbox.agent.state import ForwardState, Health
from toolbox.guest.images import ImageStore
from toolbox.machine.service import CreateOptions, MachineService


def test_report_round_trip_and_health(toolbox_home: Path) -> None:
    agent_state.machine_dir("m").mkdir(parents=True)
    assert agent_state.status("m").health is Health.NOT_RUNNING
    report = agent_state.AgentReport(
        pid=os.getpid(),
        started=agent_state.now_iso(),
        heartbeat=agent_state.now_iso(),
        engine="connected",
        forwards=(
            agent_state.ForwardReport("tcp", "127.0.0.1", 8080, 8080, "nat", "active", ("web",)),
        ),
        shares=(agent_state.ShareReport("/h", "/h", False, "mounted"),),
        warnings=("w",),
    )
    assert agent_state.write_report("m", report)
    assert agent_state.read_report("m") == report
    # Without the lock held nobody runs, whatever the file says.
    assert agent_state.status("m").health is Health.NOT_RUNNING
    assert not agent_state.write_report("gone", report)  # no machine folder: nothing written
    assert not agent_state.machine_dir("gone").exists()


HOLD_LOCK = """
import sys, time, filelock
lock = filelock.FileLock(sys.argv[1]); lock.acquire(timeout=0)
print("held", flush=True); time.sleep(60)
"""


def test_a_lock_held_by_a_live_process_is_running_and_dies_with_it(toolbox_home: Path) -> None:
    agent_state.machine_dir("m").mkdir(parents=True)
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(agent_state.lock_path("m"))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        assert agent_state.is_running("m")
        old = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=60)
        report = agent_state.AgentReport(child.pid, old.isoformat(), old.isoformat(), "x")
        agent_state.write_report("m", report)
        assert agent_state.status("m").health is Health.STALLED
        agent_state.write_report(
            "m", agent_state.AgentReport(child.pid, old.isoformat(), agent_state.now_iso(), "x")
        )
        assert agent_state.status("m").health is Health.RUNNING
        child.kill()  # kill -9: the OS releases the lock
        child.wait(10)
        assert not agent_state.is_running("m")
    finally:
        child.kill()


def test_stop_sends_sigterm_and_waits(toolbox_home: Path) -> None:
    agent_state.machine_dir("m").mkdir(parents=True)
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(agent_state.lock_path("m"))],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    now = agent_state.now_iso()
    agent_state.write_report("m", agent_state.AgentReport(child.pid, now, now, "x"))
    assert agent_state.stop("m", timeout=5)
    assert child.wait(5) == -15


def test_bind_problem_names_the_holder() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        problem = bind_problem("127.0.0.1", port, "tcp")
        assert problem is not None
        state, reason = problem
        assert state is ForwardState.CONFLICT
        assert f"host port {port}/tcp is already in use" in reason
        assert f"pid {os.getpid()}" in reason  # this test process holds it
    assert bind_problem("127.0.0.1", port, "tcp") is None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        uport = udp.getsockname()[1]
        got = bind_problem("127.0.0.1", uport, "udp")
        assert got is not None and got[0] is ForwardState.CONFLICT


class _Rows:
    """An engine client that answers ``containers()`` with recorded rows."""

    def __init__(self, rows: list[dict[str, Any]]):
        self.rows = rows

    def containers(self) -> list[dict[str, Any]]:
        return self.rows

    def close(self) -> None:
        pass


def _row(name: str, ports: list[dict[str, Any]], mounts: list[dict[str, Any]] = ()) -> dict:  # type: ignore[assignment]
    return {"Id": name * 8, "Names": [f"/{name}"], "State": "running", "Ports": ports,
            "Mounts": list(mounts)}  # fmt: skip


@pytest.fixture
def machine(toolbox_home: Path, tmp_path: Path) -> tuple[MachineService, FakeDriver]:
    images = ImageStore()
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 4096)
    images.add("img", disk, format="raw", arch="amd64", source="test")
    driver = FakeDriver()
    service = MachineService(
        images=images,
        driver_factory=lambda name: driver,
        guest=FakeGuest(driver),
        default_driver=lambda: "qemu",
    )
    service.create(CreateOptions(name="m", image="img", shares=()))
    return service, driver


def test_one_sync_pass_opens_closes_and_reports_conflicts(
    machine: tuple[MachineService, FakeDriver], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    service, driver = machine
    spec = service.get("m")
    vmspec = service.vm_spec_of(spec)
    agent = Agent("m", service)
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port_a = free.getsockname()[1]
    free.close()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port_b = taken.getsockname()[1]
    outside = tmp_path / "not-shared"
    outside.mkdir()
    rows = [
        _row("web", [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": port_a, "Type": "tcp"},
                     {"IP": "::", "PrivatePort": 80, "PublicPort": port_a, "Type": "tcp"}],
             [{"Type": "bind", "Source": str(outside), "Destination": "/x"}]),
        _row("db", [{"IP": "0.0.0.0", "PrivatePort": 5432, "PublicPort": port_b, "Type": "tcp"}]),
        _row("dns", [{"IP": "10.0.2.15", "PrivatePort": 53, "PublicPort": 53, "Type": "udp"}]),
    ]  # fmt: skip
    client = _Rows(rows)
    monkeypatch.setattr(agent, "_engine_client", lambda timeout=10.0: client)
    try:
        agent._sync(spec, driver, vmspec)
    finally:
        taken.close()
    live = {f.name: f for f in driver.live_forwards(vmspec)}
    assert f"live-tcp-{port_a}" in live
    assert live[f"live-tcp-{port_a}"].host_ip == "127.0.0.1"
    assert f"live-tcp-{port_b}" not in live  # taken on the host: not opened
    states = {f.host_port: f for f in agent._forwards.values() for f in [f.wanted]}
    assert set(states) == {port_a, port_b}
    assert agent._forwards[f"live-tcp-{port_b}"].state is ForwardState.CONFLICT
    assert "already in use" in agent._forwards[f"live-tcp-{port_b}"].reason
    assert [s.state for s in agent._skipped] == ["skipped"]  # UDP on one guest address
    assert len(agent._warnings) == 1 and str(outside) in agent._warnings[0]
    # The port frees: the next pass opens it. The web container stops: its forward goes.
    client.rows = rows[1:]
    agent._sync(spec, driver, vmspec)
    live = {f.name for f in driver.live_forwards(vmspec)}
    assert f"live-tcp-{port_b}" in live and f"live-tcp-{port_a}" not in live
    assert agent._forwards[f"live-tcp-{port_b}"].state is ForwardState.ACTIVE
    assert agent._warnings == ()
    # A new agent (the old one killed) adopts what the hypervisor has: nothing reopened.
    fresh = Agent("m", service)
    monkeypatch.setattr(fresh, "_engine_client", lambda timeout=10.0: client)
    opened: list[object] = []
    monkeypatch.setattr(driver, "open_forward", lambda s, f: opened.append(f))
    fresh._sync(spec, driver, vmspec)
    assert opened == [] and fresh._forwards[f"live-tcp-{port_b}"].state is ForwardState.ACTIVE
    # The machine stops: nothing of the agent's survives it, even where the hypervisor keeps
    # such forwards in the VM's settings (VirtualBox).
    driver.persist_live = True
    service.stop("m")
    assert driver.live.get("m") == []
    assert f"close_forward m live-tcp-{port_b}" in driver.calls
