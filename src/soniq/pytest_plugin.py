"""Re-export: the pytest plugin's old path, for ``-p soniq.pytest_plugin``. The code
(registered as the ``soniq`` pytest11 entry point) is in ``soniq.testing.pytest_plugin``."""

from soniq.testing.pytest_plugin import *  # noqa: F403
from soniq.testing.pytest_plugin import __all__ as __all__
