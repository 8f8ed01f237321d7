"""`make bench`: every benchmark of BENCHMARKS.md at a size that fits in ~15 minutes on a 2-core CPU, one after
the other, results under --out (default results/):

1. offline comparison (`bench_offline`): glm-serve vs transformers `generate` vs transformers continuous batching;
2. speculative decoding on/off (`bench_spec_decode`, small flags; its table is copied from spec.log);
3. serving sweep: `glm-serve` (embedded model) + `bench_serve --sweep-concurrency` (JSON, CDF and sweep plots);
4. server overhead (`bench_server_overhead`): HTTP at concurrency 32 vs the offline engine;
5. where a decode step's time goes (`profile_step`), embedded model and tiny random model, batch 1 and 32;
then summary.md, markdown tables of the figures. Each step's output is also kept in <step>.log, and its command
and duration in steps.json (merged across runs, so `--steps` can redo one step).

    python -m loadtests.bench_suite --out results
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from loadtests.bench_summary import write_summary
from loadtests.server_process import REPO_ROOT

SWEEP = "1,4,16,32"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="results", help="result directory")
    p.add_argument("--threads", type=int, default=1, help="torch threads of every engine (1: steadiest on 2 cores)")
    p.add_argument("--steps", default="offline,spec,sweep,overhead,profile,profile_random",
                   help="comma-separated subset to run")
    return p.parse_args(argv)


def step_commands(out: Path, threads: int) -> dict[str, list[str]]:
    py = [sys.executable, "-m"]
    return {
        "offline": [*py, "loadtests.bench_offline", "--num-prompts", "32", "--threads", str(threads),
                    "--result-file", str(out / "offline.json")],
        "spec": [*py, "loadtests.bench_spec_decode", "--batch-sizes", "1,8,32", "--ks", "0,1,2",
                 "--prompts-per-batch-size", "16", "--max-tokens", "96", "--repeats", "1", "--threads", str(threads)],
        "sweep": [*py, "loadtests.bench_serve_sweep", "--result-dir", str(out / "sweep"), "--threads", str(threads),
                  "--sweep-concurrency", SWEEP],
        "overhead": [*py, "loadtests.bench_server_overhead", "--num-prompts", "96", "--output-len", "64",
                     "--max-concurrency", "32", "--threads", str(threads), "--result-dir", str(out / "overhead")],
        "profile": [*py, "loadtests.profile_step", "--batch-sizes", "1,32", "--threads", str(threads)],
        "profile_random": [*py, "loadtests.profile_step", "--random-model", "--batch-sizes", "1,32", "--threads",
                           str(threads)],
    }


def run_step(name: str, cmd: list[str], out: Path) -> float:
    """Runs one step, its output both printed and kept in <out>/<name>.log; raises when it fails."""
    print(f"=== {name}: {' '.join(cmd[1:])}", flush=True)
    start = time.perf_counter()
    with open(out / f"{name}.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "TQDM_DISABLE": "1"})
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
    if proc.wait() != 0:
        raise RuntimeError(f"{name} failed (exit {proc.returncode}); see {out / (name + '.log')}")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    commands = step_commands(out, args.threads)
    steps_file = out / "steps.json"
    steps = json.loads(steps_file.read_text()) if steps_file.exists() else {}
    for name in args.steps.split(","):
        seconds = run_step(name, commands[name], out)
        steps[name] = {"command": " ".join(["python", *commands[name][1:]]), "seconds": seconds}
        steps_file.write_text(json.dumps(steps, indent=2))
    print(f"summary: {write_summary(out, steps)}")


if __name__ == "__main__":
    main()
