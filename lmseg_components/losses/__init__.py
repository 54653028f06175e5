"""Losses that MONAI does not provide."""

from lmseg_components.losses.msis import BSLoss, MSISLoss, RGCLoss, resize_mask

__all__ = ["BSLoss", "MSISLoss", "RGCLoss", "resize_mask"]
