"""Kept for pickles written before the format package existed: they name
`modelrepo.values.source_global`. New code imports `modelrepo.format.values`."""

from modelrepo.format.values import load_value, source_global

__all__ = ["load_value", "source_global"]
