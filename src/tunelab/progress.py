"""Progress bars for long commands: on stderr, only when stderr is a terminal, off with --no-progress."""

from __future__ import annotations

import sys


def bar(total: int | None, desc: str, unit: str = "rows", enabled: bool = True):
    """A tqdm bar (rows done, rows/s, time left). tqdm's disable=None turns it off when stderr is not a
    terminal, so logs and pipes get no bar."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=None if enabled else True,
                dynamic_ncols=True, mininterval=0.5)
