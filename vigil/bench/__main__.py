"""`python -m vigil.bench --cold-start-probe` (the fresh process whose start-up the cold-start metric times) and
`--year-probe DATA_DIR RETENTION_DAYS BASELINE_S` (the service process of `vigil bench --year`)."""

from __future__ import annotations

import sys
from pathlib import Path

from vigil.bench._throughput import _cold_start_probe
from vigil.bench._year import year_probe

if __name__ == "__main__":
    if "--cold-start-probe" in sys.argv:
        raise SystemExit(_cold_start_probe())
    if "--year-probe" in sys.argv:
        at = sys.argv.index("--year-probe")
        raise SystemExit(year_probe(Path(sys.argv[at + 1]), float(sys.argv[at + 2]), float(sys.argv[at + 3])))
