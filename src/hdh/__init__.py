"""hdh: a sovereign health data hub."""

__version__ = "0.1.0"
