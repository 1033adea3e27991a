"""CPU, memory and GPU use of the process training each cell, as MLflow system metrics.

MLflow's own system-metrics monitor samples the machine of the process that logs; here that is
the launching process, which trains nothing, while two to eight cells train side by side in
worker processes. So the writer samples each worker process itself (psutil, and NVML for GPUs
when `nvidia-ml-py` is installed) and logs under MLflow's `system/` prefix, which a run page's
"System metrics" tab charts against time:

- `system/cpu_utilization_percentage`: the worker's CPU time as a share of the whole machine,
  MLflow's meaning (on 2 cores, a busy single-thread worker is 50);
- `system/process_cpu_cores`: the same in cores (1.0 = one core busy all the time): a cell well
  under its threads was waiting on something;
- `system/process_memory_rss_megabytes`: the worker's resident memory;
- `system/system_memory_usage_megabytes` and `..._percentage`: the machine's, as MLflow logs;
- `system/gpu_utilization_percentage` and `system/gpu_memory_usage_megabytes`: the GPU the
  worker holds memory on, and the worker's memory there.

Each sample is logged at step = its number, as MLflow's monitor does: one when the cell starts
(its memory; CPU since the worker was primed), one every interval, one after each epoch, logged
with the epoch's metrics (the worker is alive then; by the time the writer hears a cell
finished, a worker with no more cells may have exited), so a cell shorter than the interval
still has its figures from start to end. Workers on another machine (Ray actors elsewhere)
are not sampled: their process is not here to read.
"""
from __future__ import annotations

import threading
import time

from mlflow.entities import Metric

INTERVAL_SECONDS = 10.0  # MLflow's default sampling interval


class WorkerSampler:
    """Samples the worker process of each running cell every `interval` seconds in a thread
    and logs the figures on the cell's run; `watch` when a cell starts, `forget` before its run
    ends, so no sample lands after FINISHED."""

    def __init__(self, client, interval: float = INTERVAL_SECONDS):
        import psutil

        self._psutil = psutil
        self.client, self.interval = client, interval
        self.cores = psutil.cpu_count() or 1
        self._watched: dict[str, tuple] = {}  # run_id -> (process, samples logged)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._nvml = _nvml()

    def watch(self, run_id: str, pid: int) -> None:
        try:
            process = self._psutil.Process(pid)
            process.cpu_percent(None)  # the first reading primes the interval
        except self._psutil.Error:
            return
        with self._lock:
            self._watched[run_id] = (process, 0)
        self._log(run_id)  # the start's sample
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="gridrun-system-metrics",
                                            daemon=True)
            self._thread.start()

    def epoch_sample(self, run_id: str) -> list[Metric]:
        """A sample at the end of one of the cell's epochs, for the caller to log in the same
        write as the epoch's own metrics (one store transaction per epoch, not two: the
        launching process shares the cores with the workers)."""
        return self._take(run_id)

    def forget(self, run_id: str) -> None:
        """No more samples: the run is about to end. (No last sample here: by now a worker with
        no more cells may be exiting, and an exiting process reads as a few megabytes; the
        sample after the cell's last epoch is its end.)"""
        with self._lock:
            self._watched.pop(run_id, None)

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._watched.clear()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                runs = list(self._watched)
            for run_id in runs:
                self._log(run_id)

    def _log(self, run_id: str) -> None:
        """One sample of the run's worker, logged at its own step."""
        metrics = self._take(run_id)
        if not metrics:
            return
        try:
            self.client.log_batch(run_id, metrics=metrics)
        except Exception:  # noqa: BLE001 - a lost sample never stops a launch
            pass

    def _take(self, run_id: str) -> list[Metric]:
        """One sample of the run's worker as metrics at the sample's own step (none when the
        run is forgotten or its worker is gone). The lock guards the table of watched runs and
        their steps, never a call to the store: a server that is away must not hold up
        `forget`, which the launch's one writing thread calls."""
        with self._lock:
            if run_id not in self._watched:  # forgotten: its run is ending
                return []
            process, step = self._watched[run_id]
            figures = self.sample(process)
            if figures is None:
                return []
            self._watched[run_id] = (process, step + 1)  # the step is this sample's alone
        now = int(time.time() * 1000)
        return [Metric(key, value, now, step) for key, value in figures.items()]

    def sample(self, process) -> dict[str, float] | None:
        """One reading of `process` (CPU since the previous reading), or None when it is gone."""
        psutil = self._psutil
        try:
            with process.oneshot():
                if process.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
                    return None  # it has exited: its figures would read as a few megabytes
                cpu = process.cpu_percent(None)  # 100 per busy core
                rss = process.memory_info().rss
        except psutil.Error:
            return None
        machine = psutil.virtual_memory()
        figures = {
            "system/cpu_utilization_percentage": round(cpu / self.cores, 1),
            "system/process_cpu_cores": round(cpu / 100, 2),
            "system/process_memory_rss_megabytes": round(rss / 2**20, 1),
            "system/system_memory_usage_megabytes": round(machine.used / 2**20, 1),
            "system/system_memory_usage_percentage": machine.percent,
        }
        if self._nvml is not None:
            figures.update(_gpu_figures(self._nvml, process.pid))
        return figures


def _nvml():
    """NVML (nvidia-ml-py, as MLflow's GPU monitor uses), or None without it or a GPU."""
    try:
        import pynvml
        pynvml.nvmlInit()
        return pynvml
    except Exception:  # noqa: BLE001 - not installed, no driver, no GPU
        return None


def _gpu_figures(nvml, pid: int) -> dict[str, float]:
    """Utilization of the GPU on which `pid` holds memory, and that memory."""
    try:
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            for proc in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if proc.pid == pid:
                    used = proc.usedGpuMemory or 0
                    return {"system/gpu_utilization_percentage":
                            float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
                            "system/gpu_memory_usage_megabytes": round(used / 2**20, 1)}
    except Exception:  # noqa: BLE001 - NVML's errors vary by driver: no GPU figures, no failure
        pass
    return {}
