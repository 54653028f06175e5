"""MONAI dictionary transforms for the ``text`` key: tokenize it, encode it with a frozen encoder, flip
images left/right together with the words "left"/"right", drop it (text-optional training), rewrite it in other
words, and replace it by a prompt that names nothing in the image."""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path

from monai.config import KeysCollection
from monai.transforms import Flip, MapTransform, RandomizableTransform

from lmseg_components.arguments import require_bool
from lmseg_components.text.auxiliary import create_aux_generator
from lmseg_components.text.base import TextEncoder
from lmseg_components.text.cache import DEFAULT_MAX_DISK_BYTES, DEFAULT_MAX_MEMORY_BYTES, TextFeatureCache
from lmseg_components.text.phrasing import (
    AUGMENTATION,
    Area,
    absent_zones,
    findings_zones,
    parse_areas,
    parse_zones,
    rephrase_organ_prompt,
)

__all__ = [
    "AuxiliaryPromptd",
    "EncodeTextd",
    "RandLeftRightFlipd",
    "RandNamesNothingd",
    "RandRephrased",
    "presence_records",
    "text_augmentation",
    "TextDropoutd",
    "swap_left_right",
]


def _texts(value, key: Hashable) -> tuple[list[str], bool]:
    """(texts, single): a string gives one text, a list/tuple of strings gives several (e.g. organ prompts)."""
    if isinstance(value, str):
        return [value], True
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return list(value), False
    raise TypeError(f"key {key!r} must hold a string or a non-empty list of strings, got {type(value).__name__}.")


def _map_texts(value, key: Hashable, rewrite: Callable[[str], str]):
    """``rewrite`` applied to a string, or to each string of a list (see :func:`_texts`)."""
    texts, single = _texts(value, key)
    rewritten = [rewrite(t) for t in texts]
    return rewritten[0] if single else rewritten


def _check_prob(prob: float) -> None:
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob must be in [0, 1], got {prob}.")


class EncodeTextd(MapTransform):
    """Encode a text key with a frozen encoder, through a :class:`TextFeatureCache`.

    Writes ``output_key`` (default ``<key>_features``): token features (L, D) float32 for a string, (N, L, D) for
    a list of N strings, with padded positions exactly zero; and ``<output_key>_pooled``: (P,) or (N, P).

    Args:
        keys: the text key(s), usually ``text``.
        encoder: the frozen text encoder (build it with ``create_text_encoder``).
        cache_dir: on-disk cache directory for the features (None: memory only).
        output_key: where to write the features; only with a single key.
        max_memory_bytes, max_disk_bytes: the cache's bounds (least recently used entries are evicted); see
            :class:`TextFeatureCache`.
    """

    def __init__(
        self,
        keys: KeysCollection,
        encoder: TextEncoder,
        cache_dir: str | Path | None = None,
        output_key: str | None = None,
        allow_missing_keys: bool = False,
        max_memory_bytes: int = DEFAULT_MAX_MEMORY_BYTES,
        max_disk_bytes: int = DEFAULT_MAX_DISK_BYTES,
    ):
        super().__init__(keys, allow_missing_keys)
        if output_key is not None and len(self.keys) != 1:
            raise ValueError("output_key can only be given with a single text key.")
        self.cache = TextFeatureCache(
            encoder, cache_dir, max_memory_bytes=max_memory_bytes, max_disk_bytes=max_disk_bytes
        )
        self.output_key = output_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            texts, single = _texts(d[key], key)
            features = self.cache.get(texts)
            out = self.output_key or f"{key}_features"
            d[out] = features.tokens[0] if single else features.tokens
            d[f"{out}_pooled"] = features.pooled[0] if single else features.pooled
        return d


_SIDE = re.compile(r"\b(left|right)\b", re.IGNORECASE)


def swap_left_right(text: str) -> str:
    """Swap the words "left" and "right" (any case, whole words), e.g. after a horizontal image flip."""

    def swap(match: re.Match) -> str:
        word = match.group(0)
        other = "right" if word.lower() == "left" else "left"
        if word.isupper():
            return other.upper()
        return other.capitalize() if word[0].isupper() else other

    return _SIDE.sub(swap, text)


class RandLeftRightFlipd(RandomizableTransform, MapTransform):
    """Flip image and mask horizontally and swap "left"/"right" in the text, together, with probability ``prob``.

    A horizontal flip moves the patient's left lung to the other side of the image, so the description must
    change with it; flips that would contradict the text (vertical flips, 90-degree rotations that turn
    "upper" into "left") are not offered.

    Args:
        keys: image-like keys to flip.
        text_key: the text key (or keys, e.g. ``["text", "aux_text"]``) to rewrite.
        spatial_axis: the horizontal axis of the (channel-first) arrays: 0 for PNGs read by MONAI's
            ``LoadImage`` (which returns (W, H)), 1 for arrays in (H, W) order.
        prob: probability of flipping.
    """

    backend = Flip.backend

    def __init__(
        self,
        keys: KeysCollection,
        text_key: str | list[str] = "text",
        spatial_axis: int = 0,
        prob: float = 0.5,
        allow_missing_keys: bool = False,
    ):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.text_keys = [text_key] if isinstance(text_key, str) else list(text_key)
        self.flip = Flip(spatial_axis=spatial_axis)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            d[key] = self.flip(d[key])
        for text_key in self.text_keys:
            if d.get(text_key):
                d[text_key] = _map_texts(d[text_key], text_key, swap_left_right)
        return d


class TextDropoutd(RandomizableTransform, MapTransform):
    """With probability ``prob``, replace the text by the empty prompt and the mask by the mask of *every*
    finding: one model then segments what the text names, and everything when there is no text.

    The dropped item takes ``all_findings_key`` (e.g. the synthetic sets' ``labelcol_all`` masks, see
    :func:`~lmseg_components.data.read_lvit_split`) as its label; the key is removed from every item, so that
    the batch carries one mask. A record without that key keeps its label: a dataset whose masks already hold
    every finding (QaTa-COV19, MosMedData+). The bundles load both masks first and place it after loading, so
    that ``CacheDataset`` keeps caching the loaded items (before, it ran first on the file paths and nothing was
    cached); leave it out of the pipeline when ``prob`` is 0.

    Args:
        keys: the text keys to empty (e.g. ``["text", "aux_text"]``; missing ones are skipped).
        prob: probability of dropping the text of an item.
        label_key: the mask key.
        all_findings_key: the key holding the every-finding mask.
    """

    def __init__(
        self,
        keys: KeysCollection = "text",
        prob: float = 0.3,
        label_key: str = "label",
        all_findings_key: str = "label_all",
    ):
        _check_prob(prob)
        MapTransform.__init__(self, keys, allow_missing_keys=True)
        RandomizableTransform.__init__(self, prob)
        self.label_key, self.all_findings_key = label_key, all_findings_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        self.randomize(None)
        every_finding = d.pop(self.all_findings_key, None)  # the batch carries one mask key
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            d[key] = ""
        if every_finding is not None:
            d[self.label_key] = every_finding
        return d


class AuxiliaryPromptd(MapTransform):
    """Set the auxiliary prompt (TGC-Net's DATE input) of each item: a non-empty ``aux_text`` already in the
    record (e.g. the dataset's ``Auxiliary`` column) is kept; otherwise ``generator(text)`` (memoised per text;
    a list of prompts gives a list); without a generator, the primary text.

    Args:
        keys: the primary text key.
        generator: a callable report -> auxiliary prompt, or a name for
            :func:`~lmseg_components.text.auxiliary.create_aux_generator` (``glossary``, ``none``, a local LM dir).
        output_key: where the auxiliary prompt goes.
    """

    def __init__(
        self,
        keys: KeysCollection = "text",
        generator: Callable[[str], str] | str | None = "glossary",
        output_key: str = "aux_text",
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.generator = generator if callable(generator) else create_aux_generator(generator)
        self.output_key = output_key
        self._memo: dict[str, str] = {}

    def _aux(self, text: str) -> str:
        if self.generator is None or not text:
            return text
        if text not in self._memo:
            self._memo[text] = self.generator(text)
        return self._memo[text]

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            existing = d.get(self.output_key)
            if existing is not None and (existing if isinstance(existing, str) else "".join(existing)).strip():
                continue
            texts, single = _texts(d[key] or "", key) if d[key] else ([""], True)
            generated = [self._aux(t) for t in texts]
            d[self.output_key] = generated[0] if single else generated
        return d


class RandRephrased(RandomizableTransform, MapTransform):
    """With probability ``prob``, rewrite a chest report into an equivalent one: the same findings in the same
    places (:func:`~lmseg_components.text.phrasing.parse_areas`), in other words drawn from the augmentation
    grammar (:data:`~lmseg_components.text.phrasing.AUGMENTATION`: zone words, side before or after the level,
    bilateral contractions, counts, finding words, sentence forms); and an organ prompt into another request for
    the same organ (:func:`~lmseg_components.text.phrasing.rephrase_organ_prompt`: synonyms, request forms). A
    text naming neither a lung zone nor an organ that the reader knows is kept as it is. The rewrites go through
    the text cache like any text (each encoded once).

    Args:
        keys: the report key(s), usually ``text``; a list of prompts is rewritten prompt by prompt.
        prob: probability of rewriting an item.
        derived_keys: keys computed from the report (TGC-Net's ``aux_text``): removed when it is rewritten, so
            that a later transform (:class:`AuxiliaryPromptd`) derives them from the rewrite.
    """

    def __init__(
        self,
        keys: KeysCollection = "text",
        prob: float = 0.5,
        derived_keys: Sequence[str] = (),
        allow_missing_keys: bool = False,
    ):
        _check_prob(prob)
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.derived_keys = list(derived_keys)

    def _rewrite(self, text: str) -> str:
        areas = parse_areas(text)
        return rephrase_organ_prompt(text, self.R) if areas is None else AUGMENTATION.describe(areas, self.R)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            if not d[key]:
                continue
            rewritten = _map_texts(d[key], key, self._rewrite)
            if rewritten != d[key]:
                d[key] = rewritten
                for derived in self.derived_keys:
                    d.pop(derived, None)
        return d


class RandNamesNothingd(RandomizableTransform, MapTransform):
    """With probability ``prob``, replace an item's prompt by one that names nothing in its image and its mask by
    an empty one, so that the model learns to answer "nothing there" instead of segmenting whatever it sees.

    Two kinds of prompt, half each where both can be made:
    - an unrelated sentence (devices, heart, bones: the augmentation grammar's, never the benchmark's);
    - a prompt naming only lung zones without a finding, where the record says where every finding is: its
      ``findings_key`` (the text table's ``Findings`` column; the synthetic sets write one) or, with
      ``report_complete``, the report itself read by :func:`~lmseg_components.text.phrasing.parse_zones` (for
      datasets whose reports name every finding, e.g. QaTa-COV19; leave it off where reports leave findings
      unnamed: a zone they do not name may hold one).

    It runs on loaded arrays (the mask is emptied in place of its values) and before
    :class:`RandLeftRightFlipd` (zones are the patient's, and the flip swaps the new prompt's sides with the
    image).

    Args:
        keys: the prompt key, usually ``text``.
        label_key: the mask key.
        prob: probability of replacing an item.
        findings_key: the record key listing every finding's zones (``"upper left; lower right"``).
        report_complete: read the zones of every finding from the report where the record has no
            ``findings_key``.
        derived_keys: keys computed from the prompt (TGC-Net's ``aux_text``), removed with it.
    """

    def __init__(
        self,
        keys: KeysCollection = "text",
        label_key: str = "label",
        prob: float = 0.15,
        findings_key: str = "findings",
        report_complete: bool = False,
        derived_keys: Sequence[str] = (),
    ):
        _check_prob(prob)
        require_bool("report_complete", report_complete)
        MapTransform.__init__(self, keys, allow_missing_keys=True)
        RandomizableTransform.__init__(self, prob)
        self.label_key, self.findings_key = label_key, findings_key
        self.report_complete = report_complete
        self.derived_keys = list(derived_keys)

    def prompt(self, d: Mapping[Hashable, object], key: str = "text") -> str:
        """A prompt that names nothing in the image of record ``d`` (drawn from this transform's random state):
        a zone without a finding or an unrelated sentence."""
        free = self._free_zones(d, d[key] if isinstance(d.get(key), str) else "")
        if free and self.R.rand() < 0.5:
            chosen = self.R.permutation(len(free))[: 1 + int(self.R.rand() < 0.3)]
            return AUGMENTATION.describe([Area(free[i][1], (free[i][0],)) for i in chosen], self.R)
        return AUGMENTATION.unrelated_sentence(self.R)

    def _free_zones(self, d: Mapping[Hashable, object], text: str) -> list[tuple[str, str]]:
        findings = d.get(self.findings_key)
        if isinstance(findings, str):
            return absent_zones(findings_zones(findings))
        if self.report_complete and text:
            present = parse_zones(text)
            if present is not None:
                return absent_zones(present)
        return []

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            d[key] = self.prompt(d, key)
            d[self.label_key] = d[self.label_key] * 0
            for derived in self.derived_keys:
                d.pop(derived, None)
        return d


def text_augmentation(
    rephrase_prob: float,
    names_nothing_prob: float = 0.0,
    report_complete: bool = False,
    derived_keys: Sequence[str] = (),
) -> list[MapTransform]:
    """The bundles' text augmentation of the ``text`` key, after loading and before the flips: report rewrites
    (:class:`RandRephrased`) and prompts that name nothing (:class:`RandNamesNothingd`); a transform whose
    probability is 0 is left out, so that the other random transforms draw as they would without it."""
    transforms: list[MapTransform] = []
    if rephrase_prob > 0:
        transforms.append(RandRephrased("text", prob=rephrase_prob, derived_keys=derived_keys))
    if names_nothing_prob > 0:
        transforms.append(
            RandNamesNothingd(
                "text", prob=names_nothing_prob, report_complete=report_complete, derived_keys=derived_keys
            )
        )
    return transforms


def presence_records(records: Sequence[Mapping], seed: int = 0, report_complete: bool = False) -> list[dict]:
    """The validation prompts of the presence decision (:class:`~lmseg_components.engines.PresenceCalibration`):
    every record as it is (``present`` True: its finding is there where its mask is not empty), then every record
    again with a prompt that names nothing in its image (``present`` False), drawn as :class:`RandNamesNothingd`
    draws training negatives under ``seed``. Records hold no prompt-derived keys yet (TGC-Net derives
    ``aux_text`` in preprocessing)."""
    negatives = RandNamesNothingd(prob=1.0, report_complete=report_complete)
    negatives.set_random_state(seed)
    absent = []
    for record in records:
        absent.append({**record, "text": negatives.prompt(record), "present": False})
    return [{**r, "present": True} for r in records] + absent
