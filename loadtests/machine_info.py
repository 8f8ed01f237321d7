"""One line naming the machine a figure was measured on: CPU model, cores, load, torch version and threads."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else platform.processor()."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_summary() -> str:
    """E.g. 'AMD EPYC, 2 cores, load 1.52/0.80/0.40, torch 2.13.0, 1 threads, cpu'."""
    import torch

    load = "/".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return (f"{cpu_model()}, {os.cpu_count()} cores, load {load}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, {device}")
