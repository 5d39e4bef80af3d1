"""Deprecated alias (issue 17): `synthesize` writes queries for passages as generate-queries does and shares its
shards, Apertium and LLM backends, so it moved to `xretrieve.xqg.synthesize`. This path is the same module object
(every name, private ones included, and monkeypatching reach the moved module), with a DeprecationWarning."""

import sys
import warnings

from xretrieve.xqg import synthesize as _moved

warnings.warn(
    "xretrieve.synthesize is deprecated: import from xretrieve.xqg.synthesize", DeprecationWarning, stacklevel=2
)
sys.modules[__name__] = _moved
