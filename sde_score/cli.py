"""`sde-score` console entry point."""
from __future__ import annotations

import sys

from . import SDES, __version__


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    print(f"sde_score {__version__}; registered SDEs: {', '.join(SDES.names())}")
    return 0
