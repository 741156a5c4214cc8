"""``python -m chaos``: see ``chaos/__init__.py`` and ``python -m chaos --help``."""

import sys

from chaos.run import main

sys.exit(main())
