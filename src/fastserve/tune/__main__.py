"""`python -m fastserve.tune`: the same as `fastserve tune`."""

import sys

from fastserve.tune import main

raise SystemExit(main(sys.argv[1:]))
