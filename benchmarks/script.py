"""What every benchmark script shares: its command line (options as config overrides, ``--help``, comma-separated
lists) and the sample standard deviation of its seeds."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable

import numpy as np

from lmseg_components.console import print_text

__all__ = ["comma_names", "comma_seeds", "run_script", "sample_std"]


def run_script(run: Callable[..., object], doc: str | None, command: list[str] | None = None) -> None:
    """The fire entry of a benchmark script whose ``run`` takes config overrides as ``**kwargs``.

    Fire hands ``--help`` / ``-h`` to such a function as the override ``help=True``, which started a two-hour
    benchmark; here they print ``doc`` instead. Positional words are refused before any data is made or model
    trained (fire leaves the second word of ``--seeds 0 1`` over as one), and so is an option that a ``run``
    without ``**kwargs`` does not take (fire would end in a ``TypeError`` traceback). What ``run`` returns is not
    printed again.

    Args:
        run: the script's ``run(**kwargs)``.
        doc: what ``--help`` prints (the script's ``__doc__``).
        command: the arguments (default: ``sys.argv[1:]``).
    """

    import fire

    def script(*unexpected, **kwargs) -> None:
        if {"help", "h"} & kwargs.keys():
            print_text(doc)
            return
        if unexpected:
            raise SystemExit(f"unexpected arguments {list(unexpected)}: give lists comma-separated, e.g. --seeds 0,1,2")
        parameters = inspect.signature(run).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            unknown = sorted(kwargs.keys() - parameters.keys())
            if unknown:
                options = ", ".join(f"--{name}" for name in parameters)
                raise SystemExit(
                    f"unknown option(s) {', '.join('--' + u for u in unknown)}; this script takes {options}"
                )
        run(**kwargs)

    fire.Fire(script, command=command)


def comma_names(value: str | tuple | list | None, allowed: Iterable[str], what: str) -> list[str]:
    """The names of a benchmark's comma-separated option (all of ``allowed`` when None); unknown ones end the
    script with one line naming them and the choices."""
    allowed = list(allowed)
    chosen = allowed if value is None else value.split(",") if isinstance(value, str) else list(value)
    unknown = sorted(set(chosen) - set(allowed))
    if unknown:
        raise SystemExit(f"unknown {what} {unknown}; choose from {allowed}")
    return chosen


def comma_seeds(value: str | int | tuple) -> list[int]:
    """``--seeds 0,1,2`` (fire gives a string, an int or a tuple) as a list of ints."""
    return [int(s) for s in str(value).split(",")] if isinstance(value, str | int) else [int(s) for s in value]


def sample_std(values: np.ndarray) -> float:
    """Sample standard deviation over seeds (0 for a single seed)."""
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0
