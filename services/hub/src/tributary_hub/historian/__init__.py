"""Historian reads over `series.SeriesStore`: the pure math (`intervals`, `interpolate`, `plot`, `calcs`) apart
from the reads that feed it (`reads`) and the request parameters (`params`)."""
