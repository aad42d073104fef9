"""icgd's version, importable from every layer (`icgd.__version__` is the same string)."""

__version__ = "0.1.0"
