"""Exceptions a function call can end with besides its own (shared by served.py and batching.py)."""


class Unavailable(Exception):
    """The version cannot answer now (its worker process crashed or is restarting; a 503)."""


class FunctionFailed(Exception):
    """The function raised in a worker process; `str()` is "<Type>: message" as the 500 says."""
