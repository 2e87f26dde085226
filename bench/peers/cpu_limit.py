"""Holding a process to a share of one CPU core with a Linux cgroup.

The scale-out run uses it to make Redis the bottleneck on a machine too small to
run enough worker processes to saturate an unlimited Redis. It needs write access
to the cgroup file system (root, usually): cgroup v2 with the ``cpu`` controller
enabled at the root, or the cgroup v1 ``cpu`` hierarchy.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")

PERIOD_US = 20_000
"""Length of the accounting period, in microseconds, for shares of 5% and more. A
limited process runs for its share of each period and then waits for the next one,
so a short period keeps those waits short. Smaller shares get a longer period,
since a quota must be at least 1 ms."""

_MIN_QUOTA_US = 1_000
_MAX_PERIOD_US = 1_000_000

MIN_SHARE = _MIN_QUOTA_US / _MAX_PERIOD_US
"""The smallest share a cgroup can hold a process to: 1 ms per second."""


class CpuLimitUnavailable(RuntimeError):
    """An error for a machine or user that cannot limit a process's CPU; the message gives the reason."""


@contextlib.contextmanager
def cpu_limited(pid: int, share: float) -> Iterator[None]:
    """Hold process ``pid`` to ``share`` (0 to 1) of one core until the block ends.

    Raises :class:`CpuLimitUnavailable` when no writable cgroup ``cpu`` controller
    is found. The cgroup made for the process is removed on the way out, after the
    process is moved back to its own group if it still runs.
    """
    if not MIN_SHARE <= share <= 1:
        raise ValueError(f"Invalid CPU share {share!r}: give a fraction of one core from {MIN_SHARE:g} to 1.")
    period_us = max(PERIOD_US, math.ceil(_MIN_QUOTA_US / share))
    try:
        root, settings = _controller(round(share * period_us), period_us)
        home = _group_of(pid, root)
    except OSError as exc:
        raise CpuLimitUnavailable(f"cannot read the cgroup file system: {exc}") from None
    group = root / f"tasq-bench-{os.getpid()}-{pid}"
    try:
        group.mkdir()
    except OSError as exc:
        raise CpuLimitUnavailable(f"cannot create a cgroup under {root}: {exc}") from None
    try:
        try:
            for name, value in settings.items():
                (group / name).write_text(value)
            (group / "cgroup.procs").write_text(str(pid))
        except OSError as exc:
            # A parent group with a smaller quota of its own rejects a larger one.
            raise CpuLimitUnavailable(f"cannot set the CPU quota of {group}: {exc}") from None
        yield
    finally:
        with contextlib.suppress(OSError):
            (home / "cgroup.procs").write_text(str(pid))
        with contextlib.suppress(OSError):
            group.rmdir()


def _controller(quota_us: int, period_us: int) -> tuple[Path, dict[str, str]]:
    """Return the cgroup root to create the group in and the files that set its quota."""
    unified = CGROUP_ROOT / "cgroup.controllers"
    if unified.exists() and "cpu" in unified.read_text().split():
        control = CGROUP_ROOT / "cgroup.subtree_control"
        if "cpu" not in control.read_text().split():
            try:
                control.write_text("+cpu")
            except OSError as exc:
                raise CpuLimitUnavailable(f"cannot enable the cpu controller in {control}: {exc}") from None
        return CGROUP_ROOT, {"cpu.max": f"{quota_us} {period_us}"}

    legacy = CGROUP_ROOT / "cpu"
    if (legacy / "cpu.cfs_quota_us").exists():
        return legacy, {"cpu.cfs_period_us": str(period_us), "cpu.cfs_quota_us": str(quota_us)}
    raise CpuLimitUnavailable(f"no cgroup cpu controller under {CGROUP_ROOT}")


def _group_of(pid: int, root: Path) -> Path:
    """Return the directory of the cgroup that process ``pid`` is in, under ``root``."""
    unified = root == CGROUP_ROOT
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _number, controllers, path = line.split(":", 2)
        if (unified and controllers == "") or (not unified and "cpu" in controllers.split(",")):
            return root / path.lstrip("/")
    return root
