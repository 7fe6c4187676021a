"""Shared helpers every stage may use (no stage logic): the CLI shell."""
