"""Public home of the model registry (implemented in :mod:`climdown.nn.models`)."""

from climdown.nn.models import *  # noqa: F403
from climdown.nn.models import __all__  # noqa: F401
