"""`python -m vigil` runs the same command line as the `vigil` script."""

from vigil.cli import entry

entry()
