"""Auxiliary (domain-knowledge) prompts for TGC-Net's DATE, generated from the primary prompt.

Auxiliary prompts are data: a dataset may ship them (the LViT table's ``Auxiliary`` column becomes the record's
``aux_text``); otherwise the ``AuxiliaryPromptd`` transform generates them with a pluggable generator: the
deterministic :class:`GlossaryExpander` by default, or :class:`CausalLMGenerator`, a local Hugging Face causal LM
loaded from a path (never an online service). Without any, the primary prompt is used.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

__all__ = ["GLOSSARY", "GlossaryExpander", "CausalLMGenerator", "create_aux_generator"]

GLOSSARY: dict[str, str] = {
    "infection": "Pulmonary infection appears as ill-defined regions brighter than the aerated lung.",
    "ground-glass": "Ground-glass opacity is a hazy increase in lung density that keeps vessels visible.",
    "consolidation": "Consolidation is a dense, homogeneous opacity that hides the vessels and airways.",
    "opacity": "An opacity is an area of the lung denser than the surrounding air-filled parenchyma.",
    "nodule": "A nodule is a small round opacity with a well-defined margin.",
    "effusion": "Pleural effusion is fluid at the lung base with a meniscus-shaped upper border.",
    "spleen": "The spleen is a crescent-shaped soft-tissue organ in the left upper abdomen, beside the stomach.",
    "liver": "The liver is the largest abdominal organ, in the right upper abdomen under the diaphragm.",
    "kidney": "The kidneys are bean-shaped organs on both sides of the spine with a bright enhancing cortex.",
    "pancreas": "The pancreas is a thin lobulated gland lying across the spine behind the stomach.",
    "stomach": "The stomach is a hollow organ in the left upper abdomen, often containing air or fluid.",
    "gallbladder": "The gallbladder is a fluid-filled sac under the liver with low attenuation.",
    "aorta": "The aorta is a round bright vessel in front of the spine.",
    "esophagus": "The esophagus is a muscular tube behind the trachea and in front of the aorta.",
}
_ZONE = re.compile(
    r"\b(?:(upper|middle|mid|lower)\s+(?:zone\s+of\s+the\s+)?(left|right)|(left|right)\s+(upper|middle|mid|lower))"
    r"\s+(?:lung|lobe)",
    re.IGNORECASE,
)


class GlossaryExpander:
    """Deterministic template expander: one glossary sentence per term found in the report (in order of first
    appearance, at most ``max_terms``), then the named lung zones. A report without any known term is returned
    unchanged.

    Args:
        glossary: term -> sentence (default :data:`GLOSSARY`: lung findings and abdominal organs).
        max_terms: sentences at most.
    """

    def __init__(self, glossary: Mapping[str, str] | None = None, max_terms: int = 4):
        self.glossary = dict(GLOSSARY if glossary is None else glossary)
        self.max_terms = max_terms

    def __call__(self, report: str) -> str:
        lower = report.lower()
        found = sorted((lower.find(term), term) for term in self.glossary if term in lower)
        sentences = [self.glossary[term] for _, term in found[: self.max_terms]]
        zones = []
        for match in _ZONE.finditer(report):
            level = (match.group(1) or match.group(4)).lower().replace("mid", "middle").replace("middledle", "middle")
            side = (match.group(2) or match.group(3)).lower()
            zones.append(f"the {level} zone of the {side} lung")
        if zones:
            sentences.append("Location: " + "; ".join(dict.fromkeys(zones)) + ".")
        return " ".join(sentences) or report


class CausalLMGenerator:
    """Auxiliary prompts from a local Hugging Face causal LM (greedy decoding, so deterministic).

    Args:
        model_path: a local directory with the model and its tokenizer (``save_pretrained`` layout); loaded with
            ``local_files_only=True``.
        template: the prompt, with ``{report}``.
        max_new_tokens: generation length.
        device: torch device string.
    """

    def __init__(
        self,
        model_path: str | Path,
        template: str = "Radiology background knowledge for: {report}\nBackground:",
        max_new_tokens: int = 48,
        device: str = "cpu",
    ):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not Path(model_path).is_dir():
            raise FileNotFoundError(f"no local causal LM directory at {model_path}")
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_path), local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(str(model_path), local_files_only=True).to(device).eval()
        self.template, self.max_new_tokens, self.device = template, max_new_tokens, device

    def __call__(self, report: str) -> str:
        import torch

        inputs = self.tokenizer(self.template.format(report=report), return_tensors="pt").to(self.device)
        with torch.no_grad():
            out = self.model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            )
        text = self.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
        return text or report


def create_aux_generator(name: str | None) -> Callable[[str], str] | None:
    """``glossary`` (default expander), ``none`` / None (use the primary prompt), or a local causal LM directory."""
    if name is None or name == "none":
        return None
    if name == "glossary":
        return GlossaryExpander()
    return CausalLMGenerator(name)
