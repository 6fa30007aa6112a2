"""What :mod:`metrana.query` raises.

::

    MetranaError
    └── MetranaQueryError          the server could not be reached or failed (status attached)
        └── QueryRequestError      the server refused the question (also ValueError): an
                                   unknown attribute, series or run, a value of the wrong type

Building a filter wrongly (``and`` between conditions, a list as a value) is a ``TypeError``
at the call site, before anything is sent.
"""

from __future__ import annotations

# Defined beside the transports that raise them, which the command line uses without pandas.
from .._read_transport import MetranaQueryError as MetranaQueryError, QueryRequestError as QueryRequestError

__all__ = ["MetranaQueryError", "QueryRequestError"]
