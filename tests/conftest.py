import sys
from pathlib import Path

# tests/model_factory.py and friends are importable as top-level helpers.
sys.path.insert(0, str(Path(__file__).parent))
