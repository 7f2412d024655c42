"""Who drives a sweep, and whether it is still alive: the rule every backend applies to the
driver tags of a sweep run (``gradatlas.driver.host``, ``.pid``, ``.heartbeat``).

A later ``gradatlas run`` must tell a live driver of the same suite (do not redo its work) from a
dead one (close what it left RUNNING, so those trials run again). The rule is a pure function of
the tags, the run's start time and this host's processes, so it lives apart from any backend.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gradatlas.record import DRIVER_HEARTBEAT, DRIVER_HOST, DRIVER_PID, as_float, as_int

STALE_AFTER_S = 120.0  # a driver on another host with no heartbeat for this long is dead

# Sweep runs claimed by this process: a run tagged with our own host and pid that is not one of
# these was written by an earlier process that had our pid (a container's pid 1, a reused pid).
_CLAIMED: set[str] = set()


@dataclass(frozen=True)
class DriverInfo:
    """The driver of one sweep run, as its tags say: host, pid, last heartbeat (unix s)."""

    sweep_run_id: str
    host: str
    pid: int | None
    heartbeat: float | None

    @classmethod
    def of(cls, sweep_run_id: str, tags: Mapping[str, str]) -> DriverInfo:
        return cls(
            sweep_run_id,
            tags.get(DRIVER_HOST, ""),
            as_int(tags.get(DRIVER_PID)),
            as_float(tags.get(DRIVER_HEARTBEAT)),
        )

    def describe(self, now: float | None = None) -> str:
        """``pid 4242 on host-a, heartbeat 12 s ago (sweep run 0123abcd)``."""
        who = f"pid {self.pid} on {self.host}" if self.host else "a driver without driver tags"
        beat = ""
        if self.heartbeat is not None:
            beat = f", heartbeat {max(0.0, (now or time.time()) - self.heartbeat):.0f} s ago"
        return f"{who}{beat} (sweep run {self.sweep_run_id[:8]})"


def driver_tags(pid: int | None = None, now: float | None = None) -> dict[str, str]:
    """The tags that name this process (or, with ``pid``, the driver this process writes for:
    its recorder) as a sweep's driver, with a heartbeat at ``now``."""
    beat = time.time() if now is None else now
    return {
        DRIVER_HOST: socket.gethostname(),
        DRIVER_PID: str(pid or os.getpid()),
        DRIVER_HEARTBEAT: f"{beat:.0f}",
    }


def claimed(sweep_run_id: str) -> None:
    """Remember that this process claimed ``sweep_run_id`` (see ``is_alive``)."""
    _CLAIMED.add(sweep_run_id)


def is_alive(info: DriverInfo, start_ms: int | None, stale_after: float, now: float) -> bool:
    """A RUNNING sweep run's driver is alive when: on this host, its pid is a live process (our
    own pid only for a run this process claimed); on another host, its heartbeat is younger
    than ``stale_after``; with no driver tags (a run created an instant ago and not yet claimed,
    or written before driver tags existed), the run started less than ``stale_after`` ago."""
    if info.host == socket.gethostname() and info.pid is not None:
        if info.pid == os.getpid():
            return info.sweep_run_id in _CLAIMED
        return pid_alive(info.pid)
    if info.heartbeat is not None:
        return now - info.heartbeat < stale_after
    return now - (start_ms or 0) / 1000 < stale_after


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process on this host (a zombie is not)."""
    if pid <= 0:  # 0 and negative pids name process groups: never "a driver"
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by another user
    except OSError:
        return False
    try:  # Linux: "pid (name) STATE ..."; a killed driver nobody reaped yet is "Z"
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
