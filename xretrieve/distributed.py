"""Deprecated alias of `xretrieve.ray`, where encode, index and serve on a Ray cluster now live."""

import warnings

from xretrieve.ray import *  # noqa: F403
from xretrieve.ray import __all__  # noqa: F401

warnings.warn("xretrieve.distributed is deprecated: import xretrieve.ray", DeprecationWarning, stacklevel=2)
