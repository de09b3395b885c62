"""``python -m benchmarks.compare_lm`` (see :mod:`benchmarks.compare_lm`)."""

import sys

from benchmarks.compare_lm.cli import main

sys.exit(main())
