"""Data sets: readers for the paper's formats, and fetchers for the real substitutes that registries ship."""
