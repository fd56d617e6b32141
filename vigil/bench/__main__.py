"""`python -m vigil.bench --cold-start-probe` (the fresh process whose start-up the cold-start metric times) and
`--year-probe DATA_DIR RETENTION_DAYS BASELINE_S` (the service process of `vigil bench --year`)."""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    # Each probe imports only its own side: the cold-start one times vigil's start-up, not the year's builder.
    if "--cold-start-probe" in sys.argv:
        from vigil.bench._throughput import _cold_start_probe

        raise SystemExit(_cold_start_probe())
    if "--year-probe" in sys.argv:
        from vigil.bench._year import year_probe

        at = sys.argv.index("--year-probe")
        raise SystemExit(year_probe(Path(sys.argv[at + 1]), float(sys.argv[at + 2]), float(sys.argv[at + 3])))
