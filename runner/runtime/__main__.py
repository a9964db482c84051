"""`python -m minirun.runtime`: the `minirun-runtime` command line (runc's verbs), for a checkout without
the console script installed."""

import sys

from minirun.runtime.cli import main

sys.exit(main())
