"""``python -m digitlab ...``: see digitlab/cli.py."""

import sys

from digitlab.cli import main

sys.exit(main())
