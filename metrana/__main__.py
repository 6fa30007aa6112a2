"""``python -m metrana`` is the ``metrana`` command."""

import sys

from ._cli import main

sys.exit(main())
