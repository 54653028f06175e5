"""What every benchmark script shares: its command line (options as config overrides, checked against the bundle's
configs; ``--help``; comma-separated lists) and the sample standard deviation of its seeds."""

from __future__ import annotations

import difflib
import inspect
import json
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from lmseg_components.console import print_text
from lmseg_components.workflows import bundle_dir

__all__ = ["check_overrides", "comma_names", "comma_seeds", "run_script", "sample_std"]


def run_script(run: Callable[..., object], doc: str | None, command: list[str] | None = None) -> None:
    """The fire entry of a benchmark script: ``run``'s options, and for a ``run`` with ``**kwargs`` config
    overrides (which the script checks with :func:`check_overrides`).

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
                options = ", ".join(
                    f"--{name}" for name, p in parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL
                )
                raise SystemExit(
                    f"unknown option(s) {', '.join('--' + u for u in unknown)}; this script takes {options}"
                )
        run(**kwargs)

    fire.Fire(script, command=command)


def check_overrides(overrides: Mapping, bundles: Iterable[str], configs: Iterable[str]) -> None:
    """End the script with one line when an override is no id of the ``configs`` of any of ``bundles`` (a typo
    such as ``--colect`` would otherwise become a new config id and a run of hours start without it). An override
    ``a#b`` is checked by its first part.
    """
    known: set[str] = set()
    for bundle in bundles:
        for name in configs:
            path = bundle_dir(bundle) / "configs" / name
            if path.is_file():
                known |= set(json.loads(path.read_text()))
    unknown = sorted(key for key in overrides if key.split("#", 1)[0] not in known)
    if unknown:
        close = {k: difflib.get_close_matches(k.split("#", 1)[0], known, n=1) for k in unknown}
        hints = "; ".join(f"--{k}" + (f" (did you mean --{close[k][0]}?)" if close[k] else "") for k in unknown)
        raise SystemExit(
            f"unknown option(s) {hints}: neither an option of this script (--help) nor an id of "
            f"{', '.join(sorted(set(bundles)))}'s {', '.join(configs)}"
        )


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
