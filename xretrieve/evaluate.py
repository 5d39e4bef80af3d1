"""Deprecated alias (issue 17): `evaluate` moved to `xretrieve.evaluation.evaluate`, beside the other ways of measuring
retrieval. This path is the same module object (every name, private ones included, and monkeypatching reach the
moved module), with a DeprecationWarning."""

import sys
import warnings

from xretrieve.evaluation import evaluate as _moved

warnings.warn(
    "xretrieve.evaluate is deprecated: import from xretrieve.evaluation.evaluate", DeprecationWarning, stacklevel=2
)
sys.modules[__name__] = _moved
