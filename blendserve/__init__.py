"""BlendServe: an OpenAI-compatible Batch API server with resource-aware prefix-tree scheduling."""

__version__ = "0.1.0"
