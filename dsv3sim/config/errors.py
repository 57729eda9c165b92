"""Errors raised for bad user input. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class ConfigError(ValueError):
    """A user-supplied field is missing, has the wrong type, or is inconsistent with another field."""
