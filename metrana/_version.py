"""metrana's version, in a module of its own so that modules the package imports can read it
(``metrana._context`` records it) without importing the package around them."""

__version__ = "0.3.0.dev0"
