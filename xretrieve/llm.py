"""Deprecated alias (issue 17): the LLM clients, prompts and reply checks serve generate-queries and synthesize, so
they moved to `xretrieve.xqg.llm`. This path is the same module object (every name, private ones included, and
monkeypatching reach the moved module), with a DeprecationWarning."""

import sys
import warnings

from xretrieve.xqg import llm as _moved

warnings.warn("xretrieve.llm is deprecated: import from xretrieve.xqg.llm", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
