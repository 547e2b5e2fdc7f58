"""``python -m tomocpt_scipion.engine``: same as the ``tomocpt-engine`` command."""

import sys

from .cli import main

sys.exit(main())
