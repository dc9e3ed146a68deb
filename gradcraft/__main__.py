"""``python -m gradcraft``: the same as the ``gradcraft`` command (see :mod:`gradcraft.cli`)."""

import sys

from gradcraft.cli import main

sys.exit(main())
