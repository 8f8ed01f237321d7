"""loadtests/bench_spec_decode.py end to end at toy size on the embedded model: every k's outputs are checked equal
to k = 0's inside the benchmark, and a row is printed per (batch size, k) with both clocks' ratios."""

from __future__ import annotations

import re

from loadtests.bench_spec_decode import main


def test_the_benchmark_runs_interleaved_and_prints_one_row_per_batch_size_and_k(capsys):
    main(["--batch-sizes", "1,2", "--ks", "0,2", "--prompts-per-batch-size", "2", "--max-tokens", "6",
          "--repeats", "2"])
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if re.match(r"\s+\d+\s+\d+\s", line)]
    assert [(r[0], r[1]) for r in rows] == [("1", "0"), ("1", "2"), ("2", "0"), ("2", "2")]
    assert all(r[3] == "1.00x" and r[5] == "1.00x" and r[6] == "1.00" for r in rows if r[1] == "0")
    assert all(float(r[6]) >= 1.0 for r in rows)  # mean accepted length: at least the verified token
