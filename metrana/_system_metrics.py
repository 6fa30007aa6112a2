"""System metrics: what the machine and this process are doing while a run is open.

:class:`Sampler` reads them (``psutil``; GPUs through NVML when ``nvidia-ml-py`` is installed
and a GPU is visible, otherwise none and no warning). Its :meth:`Sampler.sample` blocks for
a moment (it reads ``/proc``), so the engine calls it in a worker thread
(:mod:`._actors.system_sampler`), never in the thread that calls ``log()``.

Series (``system/…``, one point per interval, on the run's own step counter):

- ``cpu_percent`` (the machine, 100 = every core busy), ``process_cpu_percent`` (this process
  and its children's threads; 100 = one core), ``process_rss_bytes``, ``memory_used_bytes``,
  ``memory_percent``;
- ``disk_read_bytes_per_s``, ``disk_write_bytes_per_s``, ``net_sent_bytes_per_s``,
  ``net_recv_bytes_per_s`` (the machine's, over the last interval);
- per GPU ``i``: ``gpu/i/utilization_percent``, ``gpu/i/memory_used_bytes``,
  ``gpu/i/memory_percent``, ``gpu/i/temperature_c``.

Rates and CPU percentages need two readings: the first sample only primes them.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["PREFIX", "Sampler", "gpu_names"]

PREFIX = "system/"


def _nvml() -> Any | None:
    """The ``pynvml`` module, initialized, or None (not installed, no driver, no GPU)."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        if pynvml.nvmlDeviceGetCount() == 0:
            pynvml.nvmlShutdown()
            return None
    except Exception:  # noqa: BLE001 - pynvml.NVMLError and friends: no GPU to read
        return None
    return pynvml


def gpu_names() -> list[str]:
    """The visible GPUs' names (empty without NVML or a GPU)."""
    nvml = _nvml()
    if nvml is None:
        return []
    try:
        names = []
        for index in range(nvml.nvmlDeviceGetCount()):
            name = nvml.nvmlDeviceGetName(nvml.nvmlDeviceGetHandleByIndex(index))
            names.append(name.decode() if isinstance(name, bytes) else str(name))
        return names
    finally:
        nvml.nvmlShutdown()


class Sampler:
    """Reads the system metrics; one instance per run (it keeps the previous counters)."""

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._process = psutil.Process()
        self._last: tuple[float, Any, Any] | None = None
        self._nvml = _nvml()
        self._gpus = ([self._nvml.nvmlDeviceGetHandleByIndex(i)
                       for i in range(self._nvml.nvmlDeviceGetCount())]
                      if self._nvml is not None else [])
        # CPU percentages are measured between calls: this call primes them.
        psutil.cpu_percent(None)
        self._process.cpu_percent(None)

    def sample(self) -> list[tuple[str, float]]:
        """The metrics now, as (series name, value); blocking (call it in a worker thread)."""
        ps = self._psutil
        out: list[tuple[str, float]] = []

        def put(name: str, value: float | None) -> None:
            if value is not None:
                out.append((PREFIX + name, float(value)))

        put("cpu_percent", ps.cpu_percent(None))
        try:
            with self._process.oneshot():
                put("process_cpu_percent", self._process.cpu_percent(None))
                put("process_rss_bytes", self._process.memory_info().rss)
        except ps.Error:
            pass
        memory = ps.virtual_memory()
        put("memory_used_bytes", memory.total - memory.available)
        put("memory_percent", memory.percent)
        now = time.monotonic()
        disk = _safe(ps.disk_io_counters)
        net = _safe(ps.net_io_counters)
        if self._last is not None:
            then, disk0, net0 = self._last
            elapsed = max(now - then, 1e-3)
            if disk is not None and disk0 is not None:
                put("disk_read_bytes_per_s", max(0, disk.read_bytes - disk0.read_bytes) / elapsed)
                put("disk_write_bytes_per_s",
                    max(0, disk.write_bytes - disk0.write_bytes) / elapsed)
            if net is not None and net0 is not None:
                put("net_sent_bytes_per_s", max(0, net.bytes_sent - net0.bytes_sent) / elapsed)
                put("net_recv_bytes_per_s", max(0, net.bytes_recv - net0.bytes_recv) / elapsed)
        self._last = (now, disk, net)
        for index, handle in enumerate(self._gpus):
            out += self._gpu(index, handle)
        return out

    def _gpu(self, index: int, handle: Any) -> list[tuple[str, float]]:
        nvml = self._nvml
        assert nvml is not None
        name = f"{PREFIX}gpu/{index}/"
        out: list[tuple[str, float]] = []
        try:
            out.append((name + "utilization_percent",
                        float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)))
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            out.append((name + "memory_used_bytes", float(memory.used)))
            if memory.total:
                out.append((name + "memory_percent", 100.0 * memory.used / memory.total))
            out.append((name + "temperature_c", float(nvml.nvmlDeviceGetTemperature(
                handle, nvml.NVML_TEMPERATURE_GPU))))
        except Exception:  # noqa: BLE001 - a GPU that stops answering: what was read is kept
            pass
        return out

    def close(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass
            self._nvml = None


def _safe(read: Any) -> Any:
    """A psutil counter, or None where the machine does not have it (a container)."""
    try:
        return read()
    except Exception:  # noqa: BLE001 - psutil raises several kinds here; all mean "no data"
        return None
