"""The device a bundle runs on, read from the forms a user types: ``--device cpu``, ``cuda``, ``cuda:1`` or a
``torch.device`` expression (``--device "$torch.device('cuda:1')"``)."""

from __future__ import annotations

import re

import torch

from lmseg_components.errors import UserInputError

__all__ = ["DeviceError", "is_device_name", "resolve_device"]

ACCEPTED_FORMS = "cpu, cuda, cuda:N or a torch.device expression such as \"$torch.device('cuda:1')\""
_DEVICE_NAME = re.compile(r"^(cpu|cuda(:\d+)?)$")


class DeviceError(UserInputError, ValueError):
    """A device value that is not one of the accepted forms, or a CUDA device this machine does not have."""


def is_device_name(value: object) -> bool:
    """Whether ``value`` is a device name a request or an app may pick: ``cpu``, ``cuda`` or ``cuda:N`` (never a
    config expression, which the bundle config would evaluate)."""
    return isinstance(value, str) and _DEVICE_NAME.match(value) is not None


def resolve_device(value: str | torch.device, config_key: str = "device") -> torch.device:
    """The ``torch.device`` that ``value`` names: what the bundle configs read wherever they need the device
    (``.type`` for AMP and the CLIP tower's dtype, ``map_location``, the engines), so that ``--device cpu`` works
    as well as the default ``torch.device`` expression.

    Args:
        value: ``cpu``, ``cuda``, ``cuda:N`` (case and surrounding blanks ignored) or a ``torch.device``.
        config_key: the config id the value came from, named in the error.

    Raises:
        DeviceError: ``value`` is none of these forms, or names a CUDA device this machine does not have; the
            one-line message names the value and the accepted forms.
    """
    if isinstance(value, torch.device):
        device = value
    elif isinstance(value, str) and is_device_name(value.strip().lower()):
        device = torch.device(value.strip().lower())
    else:
        raise DeviceError(f"--{config_key} {value!r} is not a device: use {ACCEPTED_FORMS}.")
    if device.type not in ("cpu", "cuda"):
        raise DeviceError(f"--{config_key} {str(device)!r}: the bundles run on {ACCEPTED_FORMS}.")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(
                f"--{config_key} {str(device)!r}: this machine has no CUDA device; use --{config_key} cpu."
            )
        if device.index is not None and device.index >= count:
            raise DeviceError(
                f"--{config_key} {str(device)!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}."
            )
    return device
