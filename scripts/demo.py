"""Run the metrana demo (same as ``metrana demo``): ``python scripts/demo.py [--url URL]``."""

import sys

from metrana._cli import main

sys.exit(main(["demo", *sys.argv[1:]]))
