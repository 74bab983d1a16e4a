"""`python -m marsbench.training --config FILE`: one training worker (marsbench.training.worker)."""

from __future__ import annotations

import sys

from marsbench.training.worker import main

if __name__ == "__main__":
    sys.exit(main())
