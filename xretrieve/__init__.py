"""xretrieve: cross-lingual dense retrieval.

Importing the package is cheap: torch, faiss and models load inside the functions that need them.
"""

__version__ = "0.1.0"
