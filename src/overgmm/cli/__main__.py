"""``python -m overgmm.cli``: the ``overgmm`` command."""

import sys

from overgmm.cli import main

sys.exit(main())
