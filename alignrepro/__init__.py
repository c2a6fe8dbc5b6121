"""alignrepro: regenerate LLM-alignment papers' experiments end to end (engine package)."""

from alignrepro.errors import install_excepthook

__version__ = "0.1.0"

install_excepthook()  # a UserError ends a step with one line naming the cause, not a traceback
