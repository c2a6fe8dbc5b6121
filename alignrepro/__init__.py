"""alignrepro: regenerate LLM-alignment papers' experiments end to end (engine package)."""

__version__ = "0.1.0"
