"""Deprecated alias (issue 17): `augment` folds generated queries into embeddings, xQG's last step, so it moved to
`xretrieve.xqg.augment`. This path is the same module object (every name, private ones included, and monkeypatching
reach the moved module), with a DeprecationWarning."""

import sys
import warnings

from xretrieve.xqg import augment as _moved

warnings.warn("xretrieve.augment is deprecated: import from xretrieve.xqg.augment", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
