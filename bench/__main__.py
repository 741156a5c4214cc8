"""``python -m bench``: see ``bench/__init__.py`` and ``python -m bench --help``."""

from bench.run import main
from chaos.processes import exit_with

exit_with(main())
