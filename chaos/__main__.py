"""``python -m chaos``: see ``chaos/__init__.py`` and ``python -m chaos --help``."""

from chaos.processes import exit_with
from chaos.run import main

exit_with(main())
