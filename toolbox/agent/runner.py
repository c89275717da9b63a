"""The host agent process: ``toolbox agent run NAME`` (started detached by ``toolbox start``,
``toolbox create``, the app, or any ``toolbox`` command that finds it missing).

One per machine (``agent.lock``). While the machine runs it:
- follows the engine's container and network events and, after each burst of them (and after
  every reconnect), lists the running containers and brings the host's forwards in line:
  one per published port, at the same port number, on 127.0.0.1 unless the machine's
  ``port_bind`` says otherwise (hypervisor NAT forwards for ports published on all guest
  interfaces, SSH tunnels for ones published on one guest address);
- mounts the machine's shares (reverse SFTP over the pinned SSH connection) and remounts them
  when they drop; follows ``toolbox share add|rm`` live;
- writes what it did to ``agent.json`` with a heartbeat.
It exits when the machine stops, its record goes, or it is sent SIGTERM. Its state is never
read back: a new agent rebuilds everything from the engine and the hypervisor.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import filelock

from toolbox.agent import state as agent_state
from toolbox.agent.mounts import ShareMount, find_sftp_server
from toolbox.agent.plan import (
    BindMode,
    Plan,
    Via,
    WantedForward,
    nat_changes,
    plan_forwards,
    published_ports,
)
from toolbox.agent.state import ForwardReport, ForwardState, ShareReport, ShareState
from toolbox.agent.tunnel import SSHTunnel
from toolbox.errors import PortTaken, ToolboxError
from toolbox.machine import ports
from toolbox.machine.model import MachineSpec, PortBind, Share, unshared_host_folder

if TYPE_CHECKING:
    import paramiko

    from toolbox.drivers.base import Driver, Forward, VMSpec
    from toolbox.machine.service import MachineService
    from toolbox.ssh.client import GuestSSH

log = logging.getLogger("toolbox.agent")

POLL_SECONDS = 1.0  # machine state, spec changes, retries
RETRY_SECONDS = 2.0  # a conflicting forward or a failed mount is tried again this often
SAFETY_RESYNC_SECONDS = 60.0
DEBOUNCE_SECONDS = 0.02
# Container and network events that can change what is published.
RESYNC_ACTIONS = frozenset(
    {"start", "die", "stop", "kill", "destroy", "pause", "unpause", "restart", "connect",
     "disconnect", "update", "rename"}
)  # fmt: skip


def bind_problem(host_ip: str, port: int, protocol: str) -> tuple[ForwardState, str] | None:
    """Can the host side be bound right now? None when it can; else why not, naming the
    process holding it where the OS tells."""
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    with socket.socket(family, kind) as sock:
        if kind == socket.SOCK_STREAM and os.name == "posix":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host_ip, port))
        except PermissionError:
            return ForwardState.REFUSED, privileged_reason(port)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM):
                return ForwardState.REFUSED, privileged_reason(port)
            return ForwardState.CONFLICT, taken_reason(port, protocol)
    return None


def privileged_reason(port: int) -> str:
    if port < 1024:
        return (
            f"host port {port} is below 1024 and this host lets only administrators bind "
            f"such ports; publish a higher host port (-p 8{port:03d}:{port}) or, on Linux, "
            "allow it with `sysctl net.ipv4.ip_unprivileged_port_start=" + str(port) + "`"
        )
    return f"the host refused port {port}"


def taken_reason(port: int, protocol: str) -> str:
    holder = ports.port_holder(port, protocol)
    who = f" by {holder}" if holder is not None else " by another program"
    return f"host port {port}/{protocol} is already in use{who}; retried when it frees"


@dataclass
class _Live:
    """What the agent holds for one wanted forward."""

    wanted: WantedForward
    state: ForwardState
    reason: str = ""
    tunnel: SSHTunnel | None = None
    since: float = field(default_factory=time.time)  # when it reached this state


class Agent:
    def __init__(self, name: str, service: MachineService):
        self.name = name
        self.service = service
        self._stop = threading.Event()
        self._dirty = threading.Event()
        self._started = agent_state.now_iso()
        self._engine_state = "connecting"
        self._forwards: dict[str, _Live] = {}
        self._skipped: list[ForwardReport] = []
        self._mounts: dict[Share, ShareMount] = {}
        self._share_errors: dict[Share, str] = {}
        self._share_retry: dict[Share, float] = {}
        self._warnings: tuple[str, ...] = ()
        self._ssh: GuestSSH | None = None
        self._ssh_lock = threading.Lock()
        self._events_response: Any = None
        self._last_report = ""
        self._last_beat = 0.0
        self._lock: filelock.BaseFileLock | None = None

    # -- life ---------------------------------------------------------------------------

    def request_stop(self, *_: object) -> None:
        self._stop.set()
        self._dirty.set()

    def run(self) -> int:
        lock = filelock.FileLock(str(agent_state.lock_path(self.name)))
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            log.info("another agent already runs for %s", self.name)
            return 0
        self._lock = lock
        try:
            self._report(force=True)  # at once: what an earlier agent wrote is not ours
            return self._run()
        finally:
            self._shutdown()
            # Nothing of this agent's is active any more: leave no report that says so.
            with contextlib.suppress(OSError):
                agent_state.state_path(self.name).unlink()
            with contextlib.suppress(Exception):
                lock.release()

    def _run(self) -> int:
        spec = self.service.get(self.name)
        driver = self.service.driver(spec.driver)
        vmspec = self.service.vm_spec_of(spec)
        log.info("agent for %s started (pid %d)", self.name, os.getpid())
        events = threading.Thread(target=self._follow_events, name="events", daemon=True)
        events.start()
        last_sync = 0.0
        spec_mtime = self._spec_mtime()
        self._dirty.set()
        while not self._stop.is_set():
            if not agent_state.machine_dir(self.name).is_dir():
                log.info("machine %s was removed; agent ends", self.name)
                return 0
            try:
                up = driver.state(vmspec).is_up
            except ToolboxError as exc:
                log.warning("cannot read the machine's state: %s", exc)
                up = True
            if not up:
                log.info("machine %s is not running; agent ends", self.name)
                self._cleanup_stopped(driver, vmspec)
                return 0
            mtime = self._spec_mtime()
            if mtime != spec_mtime:
                spec_mtime = mtime
                with contextlib.suppress(ToolboxError):
                    spec = self.service.get(self.name)
                self._dirty.set()
            now = time.monotonic()
            retry = any(f.state is not ForwardState.ACTIVE for f in self._forwards.values())
            due = now - last_sync >= (RETRY_SECONDS if retry else SAFETY_RESYNC_SECONDS)
            if self._dirty.is_set() or due:
                time.sleep(DEBOUNCE_SECONDS)  # let a burst of events (compose up) settle
                self._dirty.clear()
                last_sync = time.monotonic()
                self._sync(spec, driver, vmspec)
                self._report()  # before the shares: mounting may take a while
            self._sync_shares(spec)
            self._report()
            self._dirty.wait(POLL_SECONDS)
        return 0

    def _spec_mtime(self) -> float:
        try:
            return self.service.store.file_for(self.name).stat().st_mtime
        except OSError:
            return 0.0

    def _shutdown(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            if self._events_response is not None:
                self._events_response.close()
        for live in self._forwards.values():
            if live.tunnel is not None:
                live.tunnel.close()
        transport = self._transport_or_none()
        for mount in self._mounts.values():
            mount.stop(transport)
        if self._ssh is not None:
            with contextlib.suppress(Exception):
                self._ssh.close()
        log.info("agent for %s stopped", self.name)

    def _cleanup_stopped(self, driver: Driver, vmspec: VMSpec) -> None:
        """A stopped machine keeps no forward of ours (VirtualBox saves controlvm rules)."""
        try:
            for fwd in driver.live_forwards(vmspec):
                if fwd.name.startswith("live-"):
                    driver.close_forward(vmspec, fwd)
        except ToolboxError as exc:
            log.warning("could not clear the forwards of the stopped machine: %s", exc)
        self._forwards.clear()
        self._report(force=True)

    # -- engine ---------------------------------------------------------------------------

    def _engine_client(self, timeout: float = 10.0) -> Any:
        from toolbox.engine.connect import EngineConfig, make_api_client

        spec = self.service.get(self.name)
        files = self.service.files(self.name)
        config = EngineConfig.from_url(spec.engine_url, files.cert_path, name=self.name)
        return make_api_client(config, timeout)

    def _follow_events(self) -> None:
        """Mark the state dirty on every relevant event; reconnect with backoff. A
        (re)connect marks it dirty too, so what happened while away is re-synced."""
        backoff = 0.5
        while not self._stop.is_set():
            try:
                client = self._engine_client()
                response = client.events(decode=True, filters={"type": ["container", "network"]})
                self._events_response = response
                self._engine_state = "connected"
                self._dirty.set()
                backoff = 0.5
                for event in response:
                    if self._stop.is_set():
                        break
                    action = str(event.get("Action") or event.get("status") or "")
                    if action.split(":", 1)[0] in RESYNC_ACTIONS:
                        self._dirty.set()
            except Exception as exc:
                if self._stop.is_set():
                    break
                self._engine_state = f"unreachable: {exc}"
                log.info("engine events: %s (retrying in %.1fs)", exc, backoff)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 10.0)

    # -- forwards -------------------------------------------------------------------------

    def _reserved(self, spec: MachineSpec) -> set[tuple[str, int]]:
        used = {("tcp", spec.ssh_port), ("tcp", spec.engine_port)}
        used |= {(f.protocol, f.host_port) for f in spec.forwards}
        return used

    def _plan(self, spec: MachineSpec) -> tuple[Plan, list[dict[str, Any]]] | None:
        try:
            client = self._engine_client()
            try:
                rows = client.containers()
                details = self._bind_sources(client, rows, spec)
            finally:
                client.close()
        except Exception as exc:
            self._engine_state = f"unreachable: {exc}"
            log.info("listing containers failed: %s", exc)
            if self._events_response is not None:  # a stalled stream: make it reconnect
                with contextlib.suppress(Exception):
                    self._events_response.close()
            return None
        self._engine_state = "connected"
        mode = BindMode.PUBLISHED if spec.port_bind is PortBind.PUBLISHED else BindMode.LOOPBACK
        return plan_forwards(published_ports(rows), mode, self._reserved(spec)), details

    def _bind_sources(
        self, client: Any, rows: list[dict[str, Any]], spec: MachineSpec
    ) -> list[dict[str, Any]]:
        """Warnings for running containers that bind-mount a host folder outside every share
        (the engine made an empty folder in the guest instead)."""
        out: list[dict[str, Any]] = []
        for row in rows:
            for mount in row.get("Mounts") or ():
                if mount.get("Type") != "bind":
                    continue
                source = str(mount.get("Source", ""))
                if unshared_host_folder(source, spec.shares):
                    out.append(
                        {
                            "container": str((row.get("Names") or ["?"])[0]).lstrip("/"),
                            "source": source,
                        }
                    )
        return out

    def _sync(self, spec: MachineSpec, driver: Driver, vmspec: VMSpec) -> None:
        planned = self._plan(spec)
        if planned is None:
            return
        plan, unshared = planned
        self._warnings = tuple(
            f"container {u['container']} bind-mounts {u['source']}, a host folder outside "
            "every share: it sees an empty folder made in the machine "
            f"(`toolbox share add {self.name} {u['source']}` shares it)"
            for u in unshared
        )
        self._skipped = [
            ForwardReport(
                s.published.protocol,
                "",
                s.published.guest_port,
                s.published.guest_port,
                "",
                ForwardState.SKIPPED.value,
                (s.published.container_name,),
                s.reason,
            )
            for s in plan.skipped
        ]
        wanted = {w.name: w for w in plan.wanted}
        # Tunnels no longer wanted (or wanted differently) close.
        for key, live in list(self._forwards.items()):
            if key not in wanted or not _same_target(wanted[key], live.wanted):
                if live.tunnel is not None:
                    live.tunnel.close()
                    log.info("closed tunnel %s", key)
                del self._forwards[key]
        # NAT: diff against what the hypervisor really has (a new agent adopts them).
        try:
            live_nat = driver.live_forwards(vmspec)
        except ToolboxError as exc:
            log.warning("cannot read the hypervisor's forwards: %s", exc)
            return
        nat_wanted = [w for w in plan.wanted if w.via is Via.NAT]
        to_open, to_close = nat_changes(nat_wanted, live_nat)
        for fwd in to_close:
            try:
                driver.close_forward(vmspec, fwd)
                log.info("closed %s", _describe(fwd))
            except ToolboxError as exc:
                log.warning("closing %s failed: %s", _describe(fwd), exc)
        opening = {f.name for f in to_open}
        for w in nat_wanted:
            if w.name not in opening:
                previous = self._forwards.get(w.name)
                since = (
                    previous.since if previous and previous.state is ForwardState.ACTIVE else None
                )
                live = _Live(w, ForwardState.ACTIVE)
                self._forwards[w.name] = replace(live, since=since) if since else live
                continue
            self._forwards[w.name] = self._open_nat(driver, vmspec, w)
        for w in plan.wanted:
            if w.via is not Via.SSH:
                continue
            current = self._forwards.get(w.name)
            if current is not None and current.state is ForwardState.ACTIVE:
                self._forwards[w.name] = replace(current, wanted=w)
                continue
            self._forwards[w.name] = self._open_tunnel(w)

    def _open_nat(self, driver: Driver, vmspec: VMSpec, w: WantedForward) -> _Live:
        problem = bind_problem(w.host_ip, w.host_port, w.protocol)
        if problem is not None:
            return self._not_active(w, *problem)
        fwd = w.forward()
        try:
            driver.open_forward(vmspec, fwd)
        except PortTaken:
            problem = bind_problem(w.host_ip, w.host_port, w.protocol)
            if problem is None:
                problem = (ForwardState.CONFLICT, taken_reason(w.host_port, w.protocol))
            return self._not_active(w, *problem)
        except ToolboxError as exc:
            return self._not_active(w, ForwardState.CONFLICT, str(exc))
        log.info("forwarding %s for %s", _describe(fwd), ", ".join(w.containers))
        return _Live(w, ForwardState.ACTIVE)

    def _open_tunnel(self, w: WantedForward) -> _Live:
        # Connect SSH before listening: a client then finds the port closed until the tunnel
        # can carry it, instead of a connection that hangs while SSH logs in.
        try:
            self._transport()
        except Exception as exc:
            return self._not_active(w, ForwardState.CONFLICT, f"SSH to the machine failed: {exc}")
        tunnel = SSHTunnel(w.host_ip, w.host_port, w.guest_ip, w.guest_port, self._transport)
        try:
            tunnel.open()
        except OSError as exc:
            problem = bind_problem(w.host_ip, w.host_port, w.protocol)
            if problem is None:
                problem = (ForwardState.CONFLICT, f"cannot listen on {w.host_port}: {exc}")
            return self._not_active(w, *problem)
        log.info(
            "tunnel %s:%d -> guest %s:%d for %s",
            w.host_ip,
            w.host_port,
            w.guest_ip,
            w.guest_port,
            ", ".join(w.containers),
        )
        return _Live(w, ForwardState.ACTIVE, tunnel=tunnel)

    def _not_active(self, w: WantedForward, state: ForwardState, reason: str) -> _Live:
        previous = self._forwards.get(w.name)
        if previous is None or previous.reason != reason:
            log.warning("port %d/%s: %s", w.host_port, w.protocol, reason)
        return _Live(w, state, reason)

    # -- SSH --------------------------------------------------------------------------------

    def _transport(self) -> paramiko.Transport:
        with self._ssh_lock:
            if self._ssh is not None:
                try:
                    return self._ssh.transport()
                except ToolboxError:
                    with contextlib.suppress(Exception):
                        self._ssh.close()
                    self._ssh = None
            spec = self.service.get(self.name)
            files = self.service.files(self.name)
            from toolbox.machine.guestops import RealGuestOps

            ssh = RealGuestOps().ssh(spec, files)
            ssh.connect(timeout=15.0)
            self._ssh = ssh
            transport = ssh.transport()
            transport.set_keepalive(15)
            return transport

    def _transport_or_none(self) -> paramiko.Transport | None:
        ssh = self._ssh
        if ssh is None:
            return None
        try:
            return ssh.transport()
        except ToolboxError:
            return None

    # -- shares -------------------------------------------------------------------------------

    def _sync_shares(self, spec: MachineSpec) -> None:
        wanted = set(spec.shares)
        for share, mount in list(self._mounts.items()):
            if share not in wanted:
                mount.stop(self._transport_or_none())
                del self._mounts[share]
                log.info("unmounted %s", share)
        for share in list(self._share_errors):
            if share not in wanted:
                del self._share_errors[share]
        if not wanted:
            return
        sftp = find_sftp_server()
        now = time.monotonic()
        for share in spec.shares:
            current = self._mounts.get(share)
            if current is not None and current.alive:
                continue
            if current is not None:  # it was mounted and ended
                self._share_errors[share] = current.error
                log.warning("share %s ended: %s", share, current.error)
                del self._mounts[share]
                self._share_retry[share] = now + RETRY_SECONDS
            if now < self._share_retry.get(share, 0.0):
                continue
            if sftp is None:
                self._share_errors[share] = (
                    "no SFTP server on this host (OpenSSH's sftp-server); install OpenSSH"
                )
                self._share_retry[share] = now + 30.0
                continue
            if not os.path.isdir(share.host_path):
                self._share_errors[share] = f"{share.host_path} is not a folder on this host"
                self._share_retry[share] = now + RETRY_SECONDS
                continue
            try:
                transport = self._transport()
                new = ShareMount(share, sftp)
                new.start(transport)
            except Exception as exc:
                self._share_errors[share] = f"mounting failed: {exc}"
                self._share_retry[share] = now + RETRY_SECONDS
                log.warning("mounting %s failed: %s", share, exc)
                continue
            self._mounts[share] = new
            self._share_errors.pop(share, None)
            log.info("mounting %s", share)

    # -- report ------------------------------------------------------------------------------

    def _report(self, force: bool = False) -> None:
        forwards = [
            ForwardReport(
                live.wanted.protocol,
                live.wanted.host_ip,
                live.wanted.host_port,
                live.wanted.guest_port,
                live.wanted.via.value,
                live.state.value,
                live.wanted.containers,
                live.reason,
                dt.datetime.fromtimestamp(live.since, dt.UTC).isoformat(timespec="milliseconds"),
            )
            for _, live in sorted(self._forwards.items())
        ]
        shares = []
        spec_shares: tuple[Share, ...] = ()
        with contextlib.suppress(ToolboxError):
            spec_shares = self.service.get(self.name).shares
        for share in spec_shares:
            mount = self._mounts.get(share)
            if mount is not None and mount.alive:
                st, reason = ShareState.MOUNTED, ""
            elif share in self._share_errors:
                st, reason = ShareState.ERROR, self._share_errors[share]
            else:
                st, reason = ShareState.MOUNTING, ""
            shares.append(
                ShareReport(share.host_path, share.guest_path, share.readonly, st.value, reason)
            )
        body = (forwards + self._skipped, shares, self._warnings, self._engine_state)
        now = time.monotonic()
        text = repr(body)
        if (
            not force
            and text == self._last_report
            and now - self._last_beat < (agent_state.HEARTBEAT_SECONDS)
        ):
            return
        self._last_report = text
        self._last_beat = now
        report = agent_state.AgentReport(
            pid=os.getpid(),
            started=self._started,
            heartbeat=agent_state.now_iso(),
            engine=self._engine_state,
            forwards=tuple(forwards + self._skipped),
            shares=tuple(shares),
            warnings=self._warnings,
        )
        if not agent_state.write_report(self.name, report):
            self._stop.set()


def _same_target(a: WantedForward, b: WantedForward) -> bool:
    return (a.host_ip, a.host_port, a.guest_ip, a.guest_port, a.via) == (
        b.host_ip,
        b.host_port,
        b.guest_ip,
        b.guest_port,
        b.via,
    )


def _describe(fwd: Forward) -> str:
    return f"{fwd.host_ip}:{fwd.host_port}->{fwd.guest_port}/{fwd.protocol}"


def main(name: str) -> int:
    """Entry point of ``toolbox agent run NAME``."""
    from toolbox.machine.service import MachineService

    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    agent = Agent(name, MachineService())
    signal.signal(signal.SIGTERM, agent.request_stop)
    signal.signal(signal.SIGINT, agent.request_stop)
    return agent.run()
