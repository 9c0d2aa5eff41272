"""`python -m tunelab.cli`."""

from tunelab.cli import run

run()
