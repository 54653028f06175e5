"""How chest radiograph reports say where a finding is: a reader of the datasets' report phrasing and two
grammars that write it, with no rule in common; and how a user asks for an organ on CT
(:func:`rephrase_organ_prompt`).

- :data:`AUGMENTATION` rewrites a training report into an equivalent one (``RandRephrased``) and writes the
  training negatives (``RandNamesNothingd``).
- :data:`HELD_OUT` writes the benchmark's ``paraphrased`` condition and its unrelated prompts, in words and
  templates that neither the augmentation nor the synthetic generator uses: its score measures how far a model
  generalises to a user's own wording, not what it memorised.

Both describe a layout of :class:`Area` s, a side of the chest and the zones a finding covers, in the way chest
radiographs are reported: the lungs are read in upper, mid and lower *zones* (a frontal film shows no lobes, and
the left lung has no middle lobe); apical, perihilar and basal name the zones, "bibasal" and "biapical" both
sides at once; the side stands before or after the level ("left upper zone", "upper zone of the left lung");
several findings are counted ("two opacities"). :func:`parse_areas` reads the areas back from QaTa-COV19 /
MosMedData+ descriptions ("Bilateral pulmonary infection, two infected areas, upper left lung and middle lower
right lung.") and from the augmentation grammar's output.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "AUGMENTATION",
    "HELD_OUT",
    "LEVELS",
    "SIDES",
    "Area",
    "ReportGrammar",
    "absent_zones",
    "findings_zones",
    "format_zones",
    "parse_areas",
    "parse_zones",
    "rephrase_organ_prompt",
]

LEVELS = ("upper", "middle", "lower")
SIDES = ("left", "right")
Rng = np.random.Generator | np.random.RandomState


@dataclass(frozen=True)
class Area:
    """One finding's place: a side (the patient's, radiological convention) and the zones it covers, in
    :data:`LEVELS` order."""

    side: str
    levels: tuple[str, ...]

    def __post_init__(self):
        if self.side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {self.side!r}.")
        if not self.levels or any(level not in LEVELS for level in self.levels):
            raise ValueError(f"levels must be 1 to 3 of {LEVELS}, got {self.levels!r}.")
        object.__setattr__(self, "levels", tuple(sorted(set(self.levels), key=LEVELS.index)))

    @property
    def zones(self) -> list[tuple[str, str]]:
        """The (level, side) zones the area covers."""
        return [(level, self.side) for level in self.levels]


def _pick(rng: Rng, options: Sequence):
    """One of ``options``, drawn from a numpy Generator or a RandomState (MONAI's transforms hold the latter)."""
    n = len(options)
    return options[int(rng.integers(n) if isinstance(rng, np.random.Generator) else rng.randint(n))]


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class ReportGrammar:
    """The rules that write a report naming a layout of areas.

    Templates are ``str.format`` strings. Place templates take ``{side}`` and ``{level}`` (one zone),
    ``{levels}`` (several zones of one side, joined by ``level_joiner``), ``{bi}`` (a both-sides word). Report
    templates take ``{places}``, ``{finding}`` (singular or plural with the count), ``{n}`` (a count word) and
    ``{be}`` (is / are); a template without ``{n}`` serves any count.

    Args:
        levels: level -> the words for it.
        places: one zone of one side.
        spans: several zones of one side.
        wholes: every zone of one side.
        both_sides: the same zone on both sides.
        bi_words: level -> one word for that zone on both sides (``bibasal``), used in ``bi_places``.
        bi_places: templates with ``{bi}``.
        counts: number of findings -> count words.
        findings: (singular, plural) finding words.
        reports: report templates.
        place_joiner, last_joiner, level_joiner: how places and levels are listed.
        unrelated: sentences that name no lung finding (prompts that name nothing).
    """

    levels: Mapping[str, tuple[str, ...]]
    places: tuple[str, ...]
    spans: tuple[str, ...]
    wholes: tuple[str, ...]
    both_sides: tuple[str, ...]
    bi_words: Mapping[str, tuple[str, ...]]
    bi_places: tuple[str, ...]
    counts: Mapping[int, tuple[str, ...]]
    findings: tuple[tuple[str, str], ...]
    reports: tuple[str, ...]
    place_joiner: str
    last_joiner: str
    level_joiner: str
    unrelated: tuple[str, ...]

    def rules(self) -> dict[str, set[str]]:
        """Every alternative of every rule, by rule name (what two grammars must not share)."""
        return {
            "level words": {w for words in self.levels.values() for w in words},
            "place templates": set(self.places),
            "span templates": set(self.spans),
            "whole-side templates": set(self.wholes),
            "both-sides templates": set(self.both_sides) | set(self.bi_places),
            "both-sides words": {w for words in self.bi_words.values() for w in words},
            "count words": {w for words in self.counts.values() for w in words},
            "finding words": {w for pair in self.findings for w in pair},
            "report templates": set(self.reports),
            "joiners": {self.place_joiner, self.last_joiner, self.level_joiner},
            "unrelated sentences": set(self.unrelated),
        }

    def _place(self, area: Area, rng: Rng) -> str:
        if len(area.levels) == len(LEVELS):
            return _pick(rng, self.wholes).format(side=area.side)
        words = [_pick(rng, self.levels[level]) for level in area.levels]
        if len(words) == 1:
            return _pick(rng, self.places).format(side=area.side, level=words[0])
        return _pick(rng, self.spans).format(side=area.side, levels=self.level_joiner.join(words))

    def _both_sides(self, level: str, rng: Rng) -> str:
        if level in self.bi_words and rng.random() < 0.5:
            return _pick(rng, self.bi_places).format(bi=_pick(rng, self.bi_words[level]))
        return _pick(rng, self.both_sides).format(level=_pick(rng, self.levels[level]))

    def describe(self, areas: Sequence[Area], rng: Rng) -> str:
        """A report naming every area once, in random order; a single-zone area on each side at the same level
        may be written as one both-sides place ("lower zones bilaterally", "bibasal lung zones").

        Raises:
            ValueError: no areas.
        """
        if not areas:
            raise ValueError("describe needs at least one area.")
        single = {a for a in areas if len(a.levels) == 1}
        places, done = [], set()
        for index in rng.permutation(len(areas)):
            area = areas[int(index)]
            if area in done:
                continue
            done.add(area)
            other = Area("right" if area.side == "left" else "left", area.levels)
            if area in single and other in single and other not in done and rng.random() < 0.5:
                done.add(other)
                places.append(self._both_sides(area.levels[0], rng))
            else:
                places.append(self._place(area, rng))
        joined = places[0] if len(places) == 1 else self.place_joiner.join(places[:-1]) + self.last_joiner + places[-1]
        n = len(areas)
        singular, plural = _pick(rng, self.findings)
        templates = [t for t in self.reports if "{n}" not in t or n in self.counts]
        template = _pick(rng, templates)
        text = template.format(
            places=joined,
            finding=singular if n == 1 else plural,
            n=_pick(rng, self.counts[n]) if n in self.counts else "",
            be="is" if n == 1 else "are",
        )
        return _capitalise(text)

    def unrelated_sentence(self, rng: Rng) -> str:
        """A sentence that names no lung finding."""
        return _pick(rng, self.unrelated)


AUGMENTATION = ReportGrammar(
    levels={"upper": ("upper", "apical"), "middle": ("mid", "middle", "perihilar"), "lower": ("lower", "basal")},
    places=(
        "{side} {level} zone",
        "{level} zone of the {side} lung",
        "{level} {side} lung",
        "{side} {level} lung",
        "{side} lung {level} zone",
    ),
    spans=("{levels} zones of the {side} lung",),
    wholes=("entire {side} lung", "whole of the {side} lung"),
    both_sides=("{level} zones bilaterally", "{level} zones of both lungs", "{level} zone on each side"),
    bi_words={"upper": ("biapical",), "lower": ("bibasal", "bibasilar")},
    bi_places=("{bi} lung zones",),
    counts={
        1: ("one", "a single"),
        2: ("two",),
        3: ("three",),
        4: ("four",),
        5: ("five",),
        6: ("six",),
    },
    findings=(
        ("opacity", "opacities"),
        ("airspace opacity", "airspace opacities"),
        ("consolidation", "areas of consolidation"),
        ("infiltrate", "infiltrates"),
        ("ground-glass opacity", "ground-glass opacities"),
        ("focus of infection", "foci of infection"),
    ),
    reports=(
        "{n} {finding} in the {places}.",
        "There {be} {n} {finding} in the {places}.",
        "{finding} in the {places}.",
        "{places}: {finding}.",
        "{finding} involving the {places}.",
        "Chest radiograph shows {finding} in the {places}.",
        "{n} {finding} projecting over the {places}.",
    ),
    place_joiner=", ",
    last_joiner=" and ",
    level_joiner=" and ",
    unrelated=(
        "Heart size is normal.",
        "Mild cardiomegaly.",
        "Sternotomy wires are intact.",
        "Endotracheal tube 4 cm above the carina.",
        "Pacemaker leads in the right atrium and ventricle.",
        "Old healed rib fractures on the left.",
        "Calcification of the aortic knuckle.",
        "Mild thoracolumbar scoliosis.",
        "Right internal jugular line in place.",
        "Surgical clips in the upper abdomen.",
        "No acute bony abnormality.",
        "Mediastinal contours are unremarkable.",
    ),
)

# No alternative in common with AUGMENTATION (tests/test_phrasing.py), nor with the synthetic generator's
# descriptions: other level words, other place and report templates, digits for counts, other finding words.
HELD_OUT = ReportGrammar(
    levels={"upper": ("superior", "cranial"), "middle": ("central",), "lower": ("inferior", "caudal")},
    places=("{side} lung, {level} region", "{level} {side}-sided field", "{level} part of the {side} lung"),
    spans=("{levels} regions of the {side} lung",),
    wholes=("{side} lung in all its regions",),
    both_sides=("{level} fields on both sides",),
    bi_words={},
    bi_places=(),
    counts={1: ("1", "a solitary"), 2: ("2", "a pair of"), 3: ("3",)},
    findings=(
        ("patchy density", "patchy densities"),
        ("hazy shadow", "hazy shadows"),
        ("opacification", "opacifications"),
    ),
    reports=(
        "{finding} seen in the {places}.",
        "Evidence of {finding} within the {places}.",
        "{n} {finding} identified, located in the {places}.",
        "Imaging demonstrates {finding} affecting the {places}.",
    ),
    place_joiner=", as well as the ",
    last_joiner=", as well as the ",
    level_joiner="/",
    unrelated=(
        "Healed fracture of the right clavicle.",
        "Cardiac silhouette within normal limits.",
        "Nasogastric tube tip below the diaphragm.",
        "Degenerative changes of the thoracic spine.",
        "The patient was imaged supine.",
    ),
)

# What parse_areas reads: the datasets' words (QaTa-COV19, MosMedData+, the synthetic generator) and the
# augmentation grammar's; the held-out words are deliberately not read (nothing trains on them).
_LEVEL_WORDS = {word: level for level, words in AUGMENTATION.levels.items() for word in (*words, level)} | {
    "all": None,
    "entire": None,
    "whole": None,
}
_BOTH_WORDS = {"bilateral", "bilaterally", "both", "each"}
_BI_WORDS = {word: level for level, words in AUGMENTATION.bi_words.items() for word in words}
_CLAUSE = re.compile(r"[,;:.]|\band\b|\bwith\b")
_WORD = re.compile(r"[a-z]+")


def parse_areas(text: str) -> list[Area] | None:
    """The areas a report names, in order, or None where it names no lung zone (an unrelated sentence, a report
    in words this reader does not know).

    Each clause (split at punctuation, "and", "with") names sides (``left``, ``right``; ``bilateral``, ``both``,
    ``each``: both sides) and levels (``upper`` / ``apical``, ``middle`` / ``mid`` / ``perihilar``, ``lower`` /
    ``basal``; ``all``, ``entire``, ``whole``: every level); ``bibasal``, ``biapical`` name both. A clause
    with levels and no side ("upper and mid zones of the left lung") passes its levels to the next clause with a
    side; one with a side and no level ("Bilateral pulmonary infection") names no area. Negations are not read:
    "no opacity in the left lower zone" reads as an area.
    """
    areas: list[Area] = []
    pending: list[str] = []
    for clause in _CLAUSE.split(text.lower()):
        words = _WORD.findall(clause)
        sides = [w for w in words if w in SIDES]
        levels = list(pending)
        for word in words:
            if word in _BI_WORDS:
                levels.append(_BI_WORDS[word])
                sides += list(SIDES)
            elif word in _LEVEL_WORDS:
                levels += list(LEVELS) if _LEVEL_WORDS[word] is None else [_LEVEL_WORDS[word]]
        if any(w in _BOTH_WORDS for w in words):
            sides += list(SIDES)
        if levels and not sides:
            pending = levels
            continue
        pending = []
        if not levels:
            continue
        for side in dict.fromkeys(sides):
            area = Area(side, tuple(levels))
            if area not in areas:
                areas.append(area)
    return areas or None


def parse_zones(text: str) -> set[tuple[str, str]] | None:
    """The (level, side) zones a report names (see :func:`parse_areas`), or None where it names none."""
    areas = parse_areas(text)
    return None if areas is None else {zone for area in areas for zone in area.zones}


def format_zones(zones: Sequence[tuple[str, str]]) -> str:
    """``"upper left; lower right"``: the zones a finding column of a text table lists (see
    :func:`~lmseg_components.data.read_text_table`)."""
    return "; ".join(f"{level} {side}" for level, side in zones)


def findings_zones(findings: str) -> set[tuple[str, str]]:
    """The (level, side) zones of a findings cell as :func:`format_zones` writes it (empty: no finding).

    Raises:
        ValueError: an entry is not ``<level> <side>``.
    """
    present = set()
    for entry in filter(None, (e.strip() for e in findings.split(";"))):
        parts = entry.split()
        if len(parts) != 2 or parts[0] not in LEVELS or parts[1] not in SIDES:
            raise ValueError(
                f"findings entry {entry!r} is not '<level> <side>' with a level in {LEVELS} and a side in {SIDES}."
            )
        present.add((parts[0], parts[1]))
    return present


def absent_zones(present: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The zones without a finding, given the (level, side) zones of every finding, in side-then-level order."""
    present = set(present)
    return [(level, side) for side in SIDES for level in LEVELS if (level, side) not in present]


# CT organ prompts: the names of the MSD / AbdomenCT-1k / WORD organs with the words reports and users also use
ORGAN_SYNONYMS = {
    "liver": ("liver", "hepatic parenchyma"),
    "spleen": ("spleen", "splenic parenchyma"),
    "kidney": ("kidney", "renal parenchyma"),
    "pancreas": ("pancreas", "pancreatic gland"),
    "stomach": ("stomach", "gastric body"),
    "gallbladder": ("gallbladder", "gall bladder"),
    "esophagus": ("esophagus", "oesophagus"),
    "duodenum": ("duodenum", "duodenal loop"),
    "colon": ("colon", "large bowel"),
    "intestine": ("small intestine", "small bowel"),
    "bladder": ("urinary bladder", "bladder"),
    "adrenal gland": ("adrenal gland", "suprarenal gland"),
    "aorta": ("aorta", "abdominal aorta"),
}
# how a user asks for one; the first is the datasets' own prompt (data.msd.ORGAN_PROMPT)
ORGAN_REQUESTS = (
    "A computerized tomography of a {organ}",
    "Segment the {organ}.",
    "Outline the {organ} on this CT.",
    "Where is the {organ}?",
    "Show me the {organ}.",
    "{organ} on an abdominal CT scan",
    "The {organ} in this CT slice",
    "Mask of the {organ}",
)
_ORGAN_WORDS = sorted(
    ((word, organ) for organ, words in ORGAN_SYNONYMS.items() for word in (*words, organ)),
    key=lambda pair: -len(pair[0]),
)


def rephrase_organ_prompt(prompt: str, rng: Rng) -> str:
    """``prompt`` asking for the same organ (and side: "left kidney") in another request form and with another
    word for the organ (:data:`ORGAN_SYNONYMS`, :data:`ORGAN_REQUESTS`); a prompt naming no organ of the list is
    returned as it is."""
    text = prompt.lower().replace("_", " ")
    for word, organ in _ORGAN_WORDS:
        if re.search(rf"\b{re.escape(word)}\b", text):
            sides = [s for s in SIDES if re.search(rf"\b{s}\b", text)]
            name = _pick(rng, ORGAN_SYNONYMS[organ])
            return _capitalise(_pick(rng, ORGAN_REQUESTS).format(organ=" ".join([*sides[:1], name])))
    return prompt
