"""Core: prompt layout, typed configs, result schema with atomic IO, RNG helpers, registry.

Nothing here imports another icgd package.
"""
