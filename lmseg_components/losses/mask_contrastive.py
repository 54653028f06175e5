"""Segmentation-aware contrastive learning for the J-RAS retriever: images are pulled together as much as their
masks agree.

For each query the loss is a soft InfoNCE over a candidate set: the query's other augmented view, plus gallery items
of *other* cases. The target distribution is ``softmax(agreement / mask_temperature)`` where agreement is the mask
Dice (:func:`~lmseg_components.metrics.pairwise_mask_dice`) of the query's mask with each candidate's. The other
view stays a positive: with ``view_agreement="best"`` (default) it counts as much as the best-matching admissible
candidate, so the targets rank other patients' masks instead of being spent on telling the query from its own copy
(with ``"one"``, agreement 1, a view outweighs a candidate of Dice 0.6 by exp(0.4 / 0.1) = 55 at the default
temperature and the step is mostly SimCLR's instance discrimination). The retriever is told how much each candidate
should be preferred instead of pushing near-identical masks apart as SimCLR does. Items of the query's own case are
never candidates (neither positive nor negative): at test time a patient is never in the gallery, so same-case
similarity teaches nothing the retriever can use. The candidate set (:func:`sample_candidates`) always holds, per
query, its most and least similar admissible masks, so that both ends of the ranking are seen at every step.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MaskAgreementInfoNCE", "VIEW_AGREEMENTS", "sample_candidates"]

VIEW_AGREEMENTS = ("best", "one")


def sample_candidates(
    agreement: torch.Tensor,
    admissible: torch.Tensor,
    num_candidates: int,
    num_similar: int = 2,
    num_dissimilar: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Gallery rows for one contrastive step, shared by the queries of a batch.

    Args:
        agreement: (Q, N) mask agreement of each query with each gallery item.
        admissible: (Q, N) bool, False where an item may not be a candidate of the query (same case).
        num_candidates: rows to return at least; random admissible rows fill up the forced ones.
        num_similar: per query, its most similar admissible rows, always included.
        num_dissimilar: per query, its least similar admissible rows, always included.
        generator: random source of the fill (default: torch's global one).

    Returns:
        (M,) sorted unique gallery rows, M >= min(num_candidates, rows admissible for some query).
    """
    if agreement.shape != admissible.shape or agreement.ndim != 2:
        raise ValueError(
            f"agreement and admissible must both be (Q, N), got {tuple(agreement.shape)}, {tuple(admissible.shape)}."
        )
    if min(num_candidates, num_similar, num_dissimilar) < 0:
        raise ValueError("num_candidates, num_similar and num_dissimilar must be non-negative.")
    forced: set[int] = set()
    for scores, allowed in zip(agreement, admissible, strict=True):
        rows = torch.nonzero(allowed).flatten()
        order = rows[torch.argsort(scores[rows], descending=True, stable=True)].tolist()
        forced.update(order[:num_similar])
        forced.update(order[len(order) - min(num_dissimilar, len(order)) :])
    pool = torch.nonzero(admissible.any(0)).flatten().tolist()
    rest = [r for r in pool if r not in forced]
    fill = max(0, num_candidates - len(forced))
    picks = torch.randperm(len(rest), generator=generator)[:fill].tolist()
    return torch.tensor(sorted(forced | {rest[i] for i in picks}), dtype=torch.long)


class MaskAgreementInfoNCE(nn.Module):
    """Soft InfoNCE with mask-agreement targets (see the module docstring).

    Args:
        temperature: temperature of the embedding similarities (as in NT-Xent).
        mask_temperature: temperature of the targets ``softmax(agreement / mask_temperature)``; small values put
            the weight on the best-matching masks, large ones spread it.
        view_agreement: the other view's agreement in the targets: ``best`` (that of the query's best admissible
            candidate; 1 when it has none) or ``one`` (a perfect match).
    """

    def __init__(self, temperature: float = 0.1, mask_temperature: float = 0.1, view_agreement: str = "best"):
        super().__init__()
        if temperature <= 0 or mask_temperature <= 0:
            raise ValueError(f"temperatures must be positive, got {temperature} and {mask_temperature}.")
        if view_agreement not in VIEW_AGREEMENTS:
            raise ValueError(f"view_agreement must be one of {VIEW_AGREEMENTS}, got {view_agreement!r}.")
        self.temperature, self.mask_temperature, self.view_agreement = temperature, mask_temperature, view_agreement

    def targets(self, agreement: torch.Tensor, admissible: torch.Tensor) -> torch.Tensor:
        """Target distribution over ``[other view, candidate 1..M]``.

        Args:
            agreement: (Q, M) mask agreement of each query with each candidate.
            admissible: (Q, M) bool, False for candidates of the query's own case (target 0).

        Returns:
            (Q, 1 + M) rows summing to 1; column 0 is the other view (see ``view_agreement``).
        """
        allowed = torch.cat([torch.ones_like(admissible[:, :1]), admissible.bool()], 1)
        view = torch.ones_like(agreement[:, :1])
        if self.view_agreement == "best":
            best = agreement.masked_fill(~admissible.bool(), -1.0).amax(1, keepdim=True)
            view = torch.where(best >= 0, best, view)
        scores = torch.cat([view, agreement], 1) / self.mask_temperature
        return torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=1)

    def forward(
        self,
        anchor: torch.Tensor,
        view: torch.Tensor,
        candidates: torch.Tensor,
        agreement: torch.Tensor,
        admissible: torch.Tensor,
    ) -> torch.Tensor:
        """
        Args:
            anchor: (Q, D) unit-norm embeddings of one view of the queries.
            view: (Q, D) embeddings of their other view.
            candidates: (M, D) embeddings of the candidate gallery items.
            agreement: (Q, M) mask agreement of the queries with the candidates.
            admissible: (Q, M) bool, False for candidates of the query's own case (left out of its softmax).

        Returns:
            scalar loss, the mean over queries of the cross-entropy between :meth:`targets` and
            ``softmax([anchor . view, anchor . candidates] / temperature)``.
        """
        if anchor.shape != view.shape or candidates.shape[1:] != anchor.shape[1:]:
            raise ValueError(
                f"anchor and view must be (Q, D) and candidates (M, D), got {tuple(anchor.shape)}, "
                f"{tuple(view.shape)}, {tuple(candidates.shape)}."
            )
        if agreement.shape != (anchor.shape[0], candidates.shape[0]) or admissible.shape != agreement.shape:
            raise ValueError(
                f"agreement and admissible must be (Q, M) = {(anchor.shape[0], candidates.shape[0])}, got "
                f"{tuple(agreement.shape)} and {tuple(admissible.shape)}."
            )
        logits = torch.cat([(anchor * view).sum(1, keepdim=True), anchor @ candidates.T], 1) / self.temperature
        allowed = torch.cat([torch.ones_like(admissible[:, :1]), admissible.bool()], 1)
        log_p = torch.log_softmax(logits.masked_fill(~allowed, float("-inf")), dim=1)
        targets = self.targets(agreement, admissible)
        return -(targets * log_p.masked_fill(~allowed, 0.0)).sum(1).mean()
