"""Losses that MONAI does not provide."""

from lmseg_components.losses.mask_contrastive import MaskAgreementInfoNCE, sample_candidates
from lmseg_components.losses.msis import BSLoss, MSISLoss, RGCLoss, resize_mask

__all__ = ["BSLoss", "MaskAgreementInfoNCE", "MSISLoss", "RGCLoss", "resize_mask", "sample_candidates"]
