#!/usr/bin/env bash
# One-shot GPU check for a bare CUDA machine: environment report, tests/gpu (FlashInfer vs the torch oracle, CUDA
# graphs, and the whole engine on CUDA: tests/gpu/test_engine_on_cuda.py), then scripts/gpu_bench.py.
#
# Uses whatever python/torch/flashinfer are there (PYTHON=... to choose; default: .venv/bin/python when it sees
# CUDA, else python3). Missing packages (flashinfer-python and its dependencies) can be carried as wheels in
# WHEELS_DIR (default .whl): they are installed with --no-index into a private target directory first.
# Fails clearly (exit 2) when torch sees no GPU or flashinfer does not import; exit 1 when tests fail.
#
#   bash scripts/gpu_check.sh                  # tests + bench (about 8 minutes at most, JIT compiles included)
#   SKIP_BENCH=1 bash scripts/gpu_check.sh     # tests only
#   BENCH_ARGS="--layers 2 --batch-sizes 1,64" bash scripts/gpu_check.sh
#   OUT_DIR=/some/dir bash scripts/gpu_check.sh  # also writes gpu_tests.log and gpu_bench.md there
#   With several GPUs (nvidia-smi -L) it also compares TP=1 with TP=N greedy tokens (scripts/tp_check.py,
#   TP_ARGS="--tp 2 --dtype bfloat16" to choose).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ] && .venv/bin/python -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' \
      2>/dev/null; then
    PYTHON=.venv/bin/python
  else
    PYTHON=python3
  fi
fi

WHEELS_DIR=${WHEELS_DIR:-.whl}
if compgen -G "$WHEELS_DIR/*.whl" >/dev/null; then
  SITE=${WHEELS_TARGET:-/tmp/glm-serve-site}
  echo "== installing $(ls "$WHEELS_DIR"/*.whl | wc -l) wheel(s) from $WHEELS_DIR into $SITE"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "$WHEELS_DIR"/*.whl || { echo "FAIL: could not install the wheels in $WHEELS_DIR"; exit 2; }
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
# FlashInfer JIT-compiles kernels on first use (nvcc + ninja); compile with every core.
export MAX_JOBS=${MAX_JOBS:-$(nproc)}

echo "== environment ($PYTHON)"
"$PYTHON" - <<'EOF' || exit 2
import importlib, shutil, sys
try:
    import torch
except ImportError as exc:
    sys.exit(f"FAIL: {sys.executable} cannot import torch ({exc}); set PYTHON=/path/to/python")
print(f"python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda})")
if not torch.cuda.is_available():
    sys.exit("FAIL: torch sees no CUDA device")
props = torch.cuda.get_device_properties(0)
print(f"GPU {props.name}, {props.total_memory / 2**30:.0f} GiB, compute capability {props.major}.{props.minor}")
print(f"nvcc: {shutil.which('nvcc') or 'absent'}, ninja: {shutil.which('ninja') or 'absent'}")
try:
    import flashinfer
except Exception as exc:
    sys.exit(f"FAIL: flashinfer does not import ({type(exc).__name__}: {exc}); carry flashinfer-python and its "
             "dependencies as wheels in WHEELS_DIR")
print(f"flashinfer {getattr(flashinfer, '__version__', '?')} at {flashinfer.__file__}")
missing = [m for m in ("pytest", "safetensors", "transformers") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"FAIL: missing Python packages for the tests: {missing}")
EOF

OUT_DIR=${OUT_DIR:-}
[ -n "$OUT_DIR" ] && mkdir -p "$OUT_DIR"
log() { if [ -n "$OUT_DIR" ]; then tee "$OUT_DIR/$1"; else cat; fi; }

echo "== tests/gpu"
timeout "${TEST_TIMEOUT:-360}" "$PYTHON" -m pytest tests/gpu -q -ra -p no:cacheprovider 2>&1 | log gpu_tests.log
TEST_RC=${PIPESTATUS[0]}
[ "$TEST_RC" = 124 ] && echo "FAIL: tests/gpu ran past ${TEST_TIMEOUT:-360} s"

TP_RC=0
NUM_GPUS=$(nvidia-smi -L 2>/dev/null | wc -l)
if [ "$NUM_GPUS" -gt 1 ]; then
  echo "== tensor parallel: TP=1 vs TP=N greedy tokens on $NUM_GPUS GPUs (scripts/tp_check.py ${TP_ARGS:-})"
  # shellcheck disable=SC2086
  timeout "${TP_TIMEOUT:-480}" "$PYTHON" scripts/tp_check.py ${TP_ARGS:-} 2>&1 | log tp_check.md
  TP_RC=${PIPESTATUS[0]}
  [ "$TP_RC" = 124 ] && echo "FAIL: the tensor-parallel check ran past ${TP_TIMEOUT:-480} s"
fi

BENCH_RC=0
if [ -z "${SKIP_BENCH:-}" ]; then
  echo "== scripts/gpu_bench.py ${BENCH_ARGS:-}"
  # shellcheck disable=SC2086
  timeout "${BENCH_TIMEOUT:-480}" "$PYTHON" scripts/gpu_bench.py ${BENCH_ARGS:-} | log gpu_bench.md
  BENCH_RC=${PIPESTATUS[0]}
  [ "$BENCH_RC" = 124 ] && echo "FAIL: the benchmark ran past ${BENCH_TIMEOUT:-480} s"
fi

echo "== summary: tests/gpu exit $TEST_RC, tensor parallel exit $TP_RC, benchmark exit $BENCH_RC"
[ "$TEST_RC" = 0 ] && [ "$TP_RC" = 0 ] && [ "$BENCH_RC" = 0 ] && exit 0
exit 1
