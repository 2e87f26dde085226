"""Holding a process to a share of one CPU core with a Linux cgroup.

The scale-out run uses it to make Redis the bottleneck on a machine too small to
run enough worker processes to saturate an unlimited Redis. It needs write access
to the cgroup file system (root, usually): cgroup v2 with the ``cpu`` controller
enabled at the root, or the cgroup v1 ``cpu`` hierarchy.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")

PERIOD_US = 20_000
"""Length of the accounting period, in microseconds. A limited process runs for its
share of each period and then waits for the next one, so a short period keeps those
waits short; cgroup v1 refuses a quota under 1 ms, which a 5% share of 20 ms meets."""


class CpuLimitUnavailable(RuntimeError):
    """This machine or user cannot limit a process's CPU; the message says why."""


@contextlib.contextmanager
def cpu_limited(pid: int, share: float) -> Iterator[None]:
    """Hold process ``pid`` to ``share`` (0 to 1) of one core until the block ends.

    Raises :class:`CpuLimitUnavailable` when no writable cgroup ``cpu`` controller
    is found. The cgroup made for the process is removed on the way out, after the
    process is moved back to its own group if it still runs.
    """
    if not 0 < share <= 1:
        raise ValueError(f"Invalid CPU share {share!r}: give a fraction of one core, above 0 and at most 1.")
    quota_us = max(1000, round(share * PERIOD_US))
    root, settings = _controller(quota_us)
    home = _group_of(pid, root)
    group = root / f"tasq-bench-{os.getpid()}-{pid}"
    try:
        group.mkdir()
    except OSError as exc:
        raise CpuLimitUnavailable(f"cannot create a cgroup under {root}: {exc}") from None
    try:
        for name, value in settings.items():
            (group / name).write_text(value)
        (group / "cgroup.procs").write_text(str(pid))
        yield
    finally:
        with contextlib.suppress(OSError):
            (home / "cgroup.procs").write_text(str(pid))
        with contextlib.suppress(OSError):
            group.rmdir()


def _controller(quota_us: int) -> tuple[Path, dict[str, str]]:
    """Return the cgroup root to create the group in and the files that set its quota."""
    unified = CGROUP_ROOT / "cgroup.controllers"
    if unified.exists() and "cpu" in unified.read_text().split():
        control = CGROUP_ROOT / "cgroup.subtree_control"
        if "cpu" not in control.read_text().split():
            try:
                control.write_text("+cpu")
            except OSError as exc:
                raise CpuLimitUnavailable(f"cannot enable the cpu controller in {control}: {exc}") from None
        return CGROUP_ROOT, {"cpu.max": f"{quota_us} {PERIOD_US}"}

    legacy = CGROUP_ROOT / "cpu"
    if (legacy / "cpu.cfs_quota_us").exists():
        return legacy, {"cpu.cfs_period_us": str(PERIOD_US), "cpu.cfs_quota_us": str(quota_us)}
    raise CpuLimitUnavailable(f"no cgroup cpu controller under {CGROUP_ROOT}")


def _group_of(pid: int, root: Path) -> Path:
    """Return the directory of the cgroup that process ``pid`` is in, under ``root``."""
    unified = root == CGROUP_ROOT
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _number, controllers, path = line.split(":", 2)
        if (unified and controllers == "") or (not unified and "cpu" in controllers.split(",")):
            return root / path.lstrip("/")
    return root
