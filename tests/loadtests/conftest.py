import sys
from pathlib import Path

# `loadtests` (repo root) is not an installed package: make it importable however pytest is started.
REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
