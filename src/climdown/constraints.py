"""Public home of the constraint layers (implemented in :mod:`climdown.nn.constraints`)."""

from climdown.nn.constraints import *  # noqa: F403
from climdown.nn.constraints import __all__  # noqa: F401
