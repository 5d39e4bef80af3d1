"""Deprecated alias (issue 17): `reproduce` moved to `xretrieve.evaluation.reproduce`, beside the other ways of
measuring retrieval. This path is the same module object (every name, private ones included, and monkeypatching
reach the moved module), with a DeprecationWarning."""

import sys
import warnings

from xretrieve.evaluation import reproduce as _moved

warnings.warn(
    "xretrieve.reproduce is deprecated: import from xretrieve.evaluation.reproduce", DeprecationWarning, stacklevel=2
)
sys.modules[__name__] = _moved
