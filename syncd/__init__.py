"""syncd: watch local drop folders and ingest every file into Box exactly once."""

__version__ = "0.1.0"
