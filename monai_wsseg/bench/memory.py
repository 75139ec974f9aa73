"""Memory of this process and of its children (DataLoader workers), sampled in a background thread with peaks
per phase, from ``/proc`` (Linux): resident set (VmRSS), the kernel's exact peak (VmHWM, reset per phase through
``/proc/self/clear_refs`` when allowed) and proportional set size (PSS: a page shared after ``fork`` counted
once). Sizes are in MB (2**20 bytes). Standard library only.
"""

from __future__ import annotations

import os
import threading

__all__ = ["MemoryMonitor"]


def _status_kb(pid: int | str, key: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (0 when the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _pss_kb(pid: int | str) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _children() -> list[int]:
    pids: list[int] = []
    try:
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/children") as f:
                    pids += [int(p) for p in f.read().split()]
            except OSError:
                continue
    except OSError:
        pass
    return pids


def _reset_hwm() -> bool:
    """Reset this process's peak RSS (VmHWM) so the next phase's peak can be read; False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class MemoryMonitor:
    """Samples memory of this process and its children in a background thread, with peaks per phase.

    Per phase: ``main_rss_mb`` (sampled VmRSS of this process), ``main_hwm_mb`` (the kernel's exact peak,
    VmHWM, when it could be reset at the phase start), ``workers_rss_mb`` (sampled sum of the children's
    VmRSS) and ``total_pss_mb`` (sampled PSS of this process plus its children: physical memory in use, a
    page shared after ``fork`` counted once).
    """

    def __init__(self, interval: float = 0.05, pss_every: int = 10) -> None:
        self.interval, self.pss_every = interval, pss_every
        self.phase = "start"
        self.peaks: dict[str, dict[str, float]] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="memory-monitor", daemon=True)
        self.hwm_resets = _reset_hwm()

    def __enter__(self) -> MemoryMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._end_phase()

    def _peak(self, key: str, value_kb: float) -> None:
        with self._lock:
            entry = self.peaks.setdefault(self.phase, {})
            entry[key] = max(entry.get(key, 0.0), value_kb / 1024)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            self.sample(pss=n % self.pss_every == 0)
            n += 1
            self._stop.wait(self.interval)

    def sample(self, pss: bool = True) -> None:
        """Record one sample of every figure in the current phase (PSS only when ``pss``: it costs more)."""
        self.samples += 1
        kids = _children()
        self._peak("main_rss_mb", _status_kb("self", "VmRSS"))
        self._peak("workers_rss_mb", sum(_status_kb(p, "VmRSS") for p in kids))
        if pss:
            self._peak("total_pss_mb", _pss_kb("self") + sum(_pss_kb(p) for p in kids))

    def _end_phase(self) -> None:
        self.sample()
        if self.hwm_resets:
            self._peak("main_hwm_mb", _status_kb("self", "VmHWM"))

    def start_phase(self, name: str) -> None:
        """Close the current phase (recording its exact peak) and start ``name``."""
        self._end_phase()
        with self._lock:
            self.phase = name
        if self.hwm_resets:
            _reset_hwm()
        self.sample()

    def overall(self) -> dict[str, float]:
        """The peak of every figure over all phases, MB."""
        out: dict[str, float] = {}
        for entry in self.peaks.values():
            for k, v in entry.items():
                out[k] = max(out.get(k, 0.0), v)
        return out
