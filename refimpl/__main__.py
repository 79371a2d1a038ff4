"""``python -m refimpl``: see :mod:`refimpl.cli`."""

import sys

from refimpl.cli import main

sys.exit(main())
