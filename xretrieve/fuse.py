"""Deprecated alias (issue 17): `fuse` moved to `xretrieve.evaluation.fuse`, beside the other ways of measuring
retrieval. This path is the same module object (every name, private ones included, and monkeypatching reach the
moved module), with a DeprecationWarning."""

import sys
import warnings

from xretrieve.evaluation import fuse as _moved

warnings.warn("xretrieve.fuse is deprecated: import from xretrieve.evaluation.fuse", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
