"""BlendServe: an OpenAI-compatible Batch API server with resource-aware prefix-tree scheduling."""

from blendserve import native  # noqa: F401  (first: it decides which build of the scheduler is imported)

__version__ = "0.1.0"
