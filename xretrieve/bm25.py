"""Deprecated alias (issue 17): `bm25` moved to `xretrieve.evaluation.bm25`, beside the other ways of measuring
retrieval. This path is the same module object (every name, private ones included, and monkeypatching reach the
moved module), with a DeprecationWarning."""

import sys
import warnings

from xretrieve.evaluation import bm25 as _moved

warnings.warn("xretrieve.bm25 is deprecated: import from xretrieve.evaluation.bm25", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
