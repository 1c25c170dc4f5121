"""GPU gauges, read at scrape time from NVML (nvidia-ml-py) or, failing that, torch.cuda.

GPU only: nothing here runs on a CPU-only machine, where the gauges are simply absent.
"""

import logging
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["GpuCollector"]

log = logging.getLogger(__name__)


def _nvml() -> Any:
    try:
        import pynvml  # type: ignore[import-not-found]  # nvidia-ml-py, optional

        pynvml.nvmlInit()
        return pynvml
    except Exception:  # not installed, or no driver
        return None


class GpuCollector(Collector):
    def __init__(
        self,
        device_index: int,
        label_values: Sequence[str],
        *,
        memory_name: str,
        utilization_name: str,
        labels: Sequence[str],
    ) -> None:
        self._index = device_index
        self._label_values = [*label_values, f"cuda:{device_index}"]
        self._labels = [*labels, "device"]
        self._memory_name = memory_name
        self._utilization_name = utilization_name
        self._nvml = _nvml()

    def _read(self) -> tuple[float | None, float | None]:
        if self._nvml is not None:
            handle = self._nvml.nvmlDeviceGetHandleByIndex(self._index)
            memory = self._nvml.nvmlDeviceGetMemoryInfo(handle).used
            utilization = self._nvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100.0
            return float(memory), utilization
        torch = sys.modules.get("torch")  # only when the torch backend already imported it
        if torch is not None and torch.cuda.is_available():
            free, total = torch.cuda.mem_get_info(self._index)
            return float(total - free), None
        return None, None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            memory, utilization = self._read()
        except Exception as exc:  # a failing driver must not break /metrics
            log.warning("cannot read GPU metrics: %s", exc)
            return
        if memory is not None:
            family = GaugeMetricFamily(
                self._memory_name, "GPU memory in use on the device.", labels=self._labels
            )
            family.add_metric(self._label_values, memory)
            yield family
        if utilization is not None:
            family = GaugeMetricFamily(
                self._utilization_name,
                "Fraction of time the GPU was busy over the last sample period.",
                labels=self._labels,
            )
            family.add_metric(self._label_values, utilization)
            yield family
