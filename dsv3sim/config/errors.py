"""Errors raised for bad user input. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class ConfigError(ValueError):
    """A user-supplied field is missing, has the wrong type, or is inconsistent with another field."""


class InfeasibleError(ConfigError):
    """A well-formed configuration that cannot run: the EP degree does not divide the experts or the GPUs, the
    topology has too few GPUs, the pipeline schedule's conditions fail, the experts do not pack onto the GPUs.
    A workload returns it as an ``Infeasible`` result carrying ``reason``; raised anywhere else (a direct
    command) it is bad input like any ConfigError (one line, exit 2)."""

    @property
    def reason(self) -> str:
        return str(self)
