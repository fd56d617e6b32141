"""`python -m vigil.bench --cold-start-probe`: the fresh process whose start-up the cold-start metric times."""

from __future__ import annotations

import sys

from vigil.bench._throughput import _cold_start_probe

if __name__ == "__main__":
    if "--cold-start-probe" in sys.argv:
        raise SystemExit(_cold_start_probe())
