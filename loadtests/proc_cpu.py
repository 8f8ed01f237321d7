"""CPU seconds a process has used, split into its main thread and the rest, from /proc (Linux): what a
benchmark's processes cost, independent of how much of the machine other jobs left them (wall-clock figures on a
shared machine are not). For glm-serve the main thread is the event loop, the rest is mostly the engine thread.
"""

from __future__ import annotations

import os
from pathlib import Path


def main_and_other_cpu_seconds(pid: int) -> tuple[float, float] | None:
    """(main thread, all other threads) user + system CPU seconds; None where /proc is absent (not Linux).

    NOTE: Python does not name OS threads, so the main thread is told apart by its id (= the process id).
    """
    tasks = Path(f"/proc/{pid}/task")
    if not tasks.is_dir():
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    main = other = 0.0
    for task in tasks.iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # NOTE: a thread may end between listing and reading
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (man 5 proc: fields 14, 15)
        if task.name == str(pid):
            main += seconds
        else:
            other += seconds
    return main, other
