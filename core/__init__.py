"""Shared helpers every stage may use (no stage logic): the CLI shell and readable logs (``cli``, ``logs``),
strict YAML configs with ``from:`` includes (``config``), crash-safe output and the run lock (``safeio``),
hashes, versions and run records (``provenance``), Kaplan-Meier helpers (``km``).

``core`` imports no stage package (tests/core/test_layers.py checks it).
"""
