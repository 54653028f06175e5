"""Errors about a user's input (a config value, a file) that end a command with their one line instead of the
traceback through MONAI's config resolution."""

from __future__ import annotations

import sys

__all__ = ["UserInputError", "user_input_error"]


class UserInputError(Exception):
    """An error whose message names the bad value and what to do instead.

    Raising one installs a ``sys.excepthook`` under which, left uncaught, it ends the process with ``error:
    <message>`` on stderr and exit status 1, also when MONAI wraps it (``Failed to evaluate ...``); every other
    error is shown as before.
    """

    def __init__(self, message: str):
        super().__init__(message)
        _install_exit_hook()


def user_input_error(error: BaseException | None) -> UserInputError | None:
    """The :class:`UserInputError` in ``error``'s chain of causes and contexts, or None."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UserInputError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _install_exit_hook() -> None:
    previous = sys.excepthook
    if getattr(previous, "_lmseg_user_input_hook", False):
        return

    def hook(kind, error, traceback):
        found = user_input_error(error)
        if found is None:
            previous(kind, error, traceback)
        else:
            print(f"error: {found}", file=sys.stderr)

    hook._lmseg_user_input_hook = True
    sys.excepthook = hook
