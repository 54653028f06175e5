"""Argument checks shared by the networks', transforms' and retrieval constructors."""

from __future__ import annotations

__all__ = ["require_bool"]


def require_bool(name: str, value: object) -> None:
    """Refuse a switch that is not a bool: ``--use_retrieval false`` on the command line arrives as the (truthy)
    string ``"false"`` and would silently leave the feature on."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False (command line: --{name} False), got {value!r}.")
