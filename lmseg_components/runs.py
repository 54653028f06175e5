"""A trained run: what the network in a run's ``models/`` folder was trained with, and the bundle loaded with those
values. Training writes the record (``ResumableCheckpoint`` of :mod:`lmseg_components.engines.checkpoint`: its file
and its reader live with the writer, and are named here too); everything after training — inference, export,
publishing, the Label and Deploy apps, the memory bank — reads a run through this module."""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterator, Mapping, Sequence
from functools import cached_property
from pathlib import Path

from monai.bundle import ConfigParser

from lmseg_components.engines.checkpoint import RUN_RECORD_FILE, trained_values
from lmseg_components.engines.presence import PRESENCE_THRESHOLD, VALIDATION_AUROC
from lmseg_components.errors import UserInputError
from lmseg_components.locations import BUNDLES_DIR
from lmseg_components.workflows import load_bundle

__all__ = [
    "RUN_RECORD_FILE",
    "TrainedValueError",
    "TrainedValues",
    "bundle_that_trained",
    "bundles_that_trained",
    "check_trained_with",
    "load_trained_bundle",
    "recorded_ids",
    "trained_overrides",
    "trained_values",
]

logger = logging.getLogger(__name__)


class TrainedValueError(UserInputError, KeyError):
    """A value ``inference.json`` reads from the trained run that the run does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def _plain(value: object) -> bool:
    """A value written out in a config (a number, a string that is not a reference or an expression, a list of such
    values), not a component or an expression."""
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, str):
        return not value.startswith(("$", "@", "%"))
    return value is None or isinstance(value, bool | int | float)


class TrainedValues(Mapping):
    """The values a bundle's ``inference.json`` builds its network and preprocessing with, so that each is written
    once, in ``train.json``: the run record beside the checkpoint in ``ckpt_dir`` (what the run was trained with,
    overrides included) or, where nothing was trained yet (random weights, as the Model Zoo's checks run it), the
    plain values of a ``train.json``: ``bundle_root``'s own (a bundle folder) or else that of ``bundle`` (by name,
    this checkout's or the installed package's). A value an older run's record lacks is ``bundle``'s default, with
    a warning. A ``--key value`` override of ``inference.json`` replaces its ``$@trained['key']`` as usual.

    Raises (on lookup):
        TrainedValueError: a key nothing holds; the message names where it looked and the override to pass.
    """

    def __init__(self, ckpt_dir: str | Path, bundle_root: str | Path, bundle: str | None = None):
        self.ckpt_dir = Path(ckpt_dir)
        self._values = trained_values(ckpt_dir)
        self.source = self.ckpt_dir / RUN_RECORD_FILE
        own, named = Path(bundle_root) / "configs" / "train.json", BUNDLES_DIR / str(bundle) / "configs" / "train.json"
        self._defaults = own if own.is_file() else named if bundle and named.is_file() else None
        if not self._values and self._defaults:
            self._values, self.source = _plain_values(self._defaults), self._defaults
            self._defaults = None

    @cached_property
    def _default_values(self) -> dict:
        """The plain values of the ``train.json`` whose defaults fill what a run's record lacks (read once)."""
        return _plain_values(self._defaults) if self._defaults else {}

    def __getitem__(self, key: str) -> object:
        if key in self._values:
            return self._values[key]
        if key in self._default_values:
            value = self._values[key] = self._default_values[key]
            logger.warning(f"{self.source} has no {key!r}: using {self._defaults}'s {value!r}")
            return value
        if self.source.name == RUN_RECORD_FILE and not self._values:
            where = f"{self.ckpt_dir} holds no trained run ({RUN_RECORD_FILE}) to read {key!r} from"
        else:
            where = f"{self.source} has no {key!r}"
        raise TrainedValueError(f"{where}: point bundle_root at a trained run, or pass --{key} <value>")

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def _plain_values(train: Path) -> dict:
    """The plain values (:func:`_plain`) of the top level of the config file ``train``."""
    return {k: v for k, v in json.loads(train.read_text()).items() if _plain(v)}


def recorded_ids(train: Mapping) -> set[str]:
    """The ids a ``train.json`` (its content) records in the run record, ``train#checkpoint#run_record``; none
    for a config without one (an overlay)."""
    return set(train.get("train", {}).get("checkpoint", {}).get("run_record", {}))


def _record_keys(bundle: Path) -> set[str]:
    """The keys a run record of ``bundle`` may hold: its ``train.json``'s ``run_record`` and those the presence
    calibration adds."""
    config = json.loads((bundle / "configs" / "train.json").read_text())
    return recorded_ids(config) | {PRESENCE_THRESHOLD, VALIDATION_AUROC}


def bundles_that_trained(ckpt_dir: str | Path) -> list[str]:
    """The bundles of this checkout whose run record holds every value recorded in ``ckpt_dir``."""
    record = set(trained_values(ckpt_dir))
    candidates = sorted(p.parent.parent for p in BUNDLES_DIR.glob("*/configs/train.json"))
    return [b.name for b in candidates if record and record <= _record_keys(b)]


def bundle_that_trained(ckpt_dir: str | Path, among: Collection[str] | None = None, option: str = "bundle") -> str:
    """The one bundle (of ``among``; default any of this checkout) whose run record holds every value recorded in
    ``ckpt_dir``.

    Raises:
        ValueError: none or several match; the message names them and ``option``, the caller's way to name it.
    """
    names = [name for name in bundles_that_trained(ckpt_dir) if among is None or name in among]
    if len(names) != 1:
        within = f" among {', '.join(among)}" if among is not None else ""
        which = f"it matches {', '.join(names)}" if names else f"it matches no bundle{within}"
        raise ValueError(f"{ckpt_dir}: cannot tell which bundle trained this model ({which}); pass {option}")
    return names[0]


def check_trained_with(bundle: str | Path, ckpt_dir: str | Path) -> None:
    """Refuse a checkpoint that another bundle trained: its run record holds values ``bundle`` does not set.

    Raises:
        ValueError: naming the foreign values, the bundle(s) whose record holds them all, and ``bundle``.
    """
    bundle = Path(bundle)
    if not (bundle / "configs" / "train.json").is_file():
        return  # a published bundle without its training config: nothing to compare with
    record = set(trained_values(ckpt_dir))
    foreign = sorted(record - _record_keys(bundle))
    if not foreign:
        return
    others = [name for name in bundles_that_trained(ckpt_dir) if name != bundle.name]
    trained = f"it was trained with {' or '.join(others)}" if others else "another bundle trained it"
    raise ValueError(
        f"{ckpt_dir}: its run record holds {', '.join(foreign)}, which {bundle.name} does not set: {trained}, "
        f"not {bundle.name}"
    )


def trained_overrides(
    bundle: str | Path, configs: Sequence[str], ckpt_dir: str | Path, overrides: Mapping | None = None
) -> dict:
    """The CLI-style ``overrides`` completed with the values the network in ``ckpt_dir`` was trained with
    (:func:`trained_values`: those that the bundle's ``configs`` set as plain values, not components such as
    ``dataset``). An override of ``presence_threshold`` (chosen on validation data when training ended) replaces
    the recorded one.

    Raises:
        ValueError: an override contradicts a trained value (the message names both and the record).
    """
    overrides = dict(overrides or {})
    parser = load_bundle(bundle, configs, overrides)
    trained = {k: v for k, v in trained_values(ckpt_dir).items() if k in parser and not isinstance(parser.get(k), dict)}
    # the presence threshold is a decision on the network's output, not part of the network: a user may move it
    conflicts = {k: v for k, v in overrides.items() if k in trained and v != trained[k] and k != PRESENCE_THRESHOLD}
    if conflicts:
        raise ValueError(
            f"the model in {ckpt_dir} was trained with {', '.join(f'{k}={trained[k]!r}' for k in conflicts)} (its "
            f"run record), not {', '.join(f'{k}={v!r}' for k, v in conflicts.items())}: drop these overrides to use "
            "the trained network."
        )
    return {**trained, **overrides}


def load_trained_bundle(
    bundle: str | Path, configs: Sequence[str], ckpt_dir: str | Path, overrides: Mapping | None = None
) -> ConfigParser:
    """The bundle's ``configs`` parsed with :func:`trained_overrides`."""
    return load_bundle(bundle, configs, trained_overrides(bundle, configs, ckpt_dir, overrides))
