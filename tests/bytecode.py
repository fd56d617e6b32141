"""Bytecode for the suite's processes, cached outside the checkout when the environment forbids it beside
the sources (PYTHONDONTWRITEBYTECODE, as on the machines the suite runs on).

Why. Without a cache every pytest worker rewrites and compiles each test module again (about 7 s of CPU
per worker, measured: collection 11.6 s of CPU without, 4.7 s with) and every `vigil` subprocess compiles
vigil's modules (about 0.3 s a start, and the suite starts vigil hundreds of times). The cache goes to a
directory of this user's under the temporary directory (PYTHONPYCACHEPREFIX), so the checkout stays free
of .pyc files as the environment asked; the subprocesses inherit it through the environment. Imported by
`tests/conftest.py` before anything of vigil's, and by each xdist worker, which starts with the environment
set here by the controller.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from pathlib import Path


def keep_bytecode_outside_the_checkout() -> Path | None:
    """Cache bytecode under the temporary directory if the environment forbade it beside the sources; where."""
    if sys.pycache_prefix:
        return Path(sys.pycache_prefix)
    if not sys.dont_write_bytecode:
        return None  # beside the sources, as Python does by default
    where = Path(tempfile.gettempdir()) / f"vigil-tests-pycache-{os.getuid()}"
    try:
        where.mkdir(mode=0o700, exist_ok=True)
        found = where.lstat()
    except OSError:
        return None
    if found.st_uid != os.getuid() or not stat.S_ISDIR(found.st_mode) or found.st_mode & 0o077:
        return None  # not a private directory of ours: bytecode from it could be anyone's, so compile as before
    sys.pycache_prefix = str(where)
    sys.dont_write_bytecode = False
    os.environ["PYTHONPYCACHEPREFIX"] = str(where)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    return where


CACHE = keep_bytecode_outside_the_checkout()
