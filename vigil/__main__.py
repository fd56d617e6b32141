"""`python -m vigil` runs the same command line as the `vigil` script."""

from vigil.cli import main

raise SystemExit(main())
