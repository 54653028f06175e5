"""The ``lmseg`` dispatcher: answers ``--help`` / ``--version`` and refuses an unknown command or option (naming the
closest valid one) with the standard library alone, then hands the command to python-fire; each command imports
torch and MONAI only when it runs."""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterable

from lmseg_components.apps.cli.checks import verify_bundles
from lmseg_components.apps.cli.data import check_data, demo, make_synthetic
from lmseg_components.apps.cli.integrations import deploy_app, label_app
from lmseg_components.apps.cli.models import export, jras_bank, publish, segment, serve
from lmseg_components.console import print_text

__all__ = ["COMMANDS", "main"]


COMMANDS: dict[str, Callable[..., None]] = {
    "make-synthetic": make_synthetic,
    "check-data": check_data,
    "demo": demo,
    "segment": segment,
    "serve": serve,
    "export": export,
    "publish": publish,
    "label-app": label_app,
    "deploy-app": deploy_app,
    "jras-bank": jras_bank,
    "verify-bundles": verify_bundles,
}

HELP_FLAGS = ("--help", "-h", "help")


def main(argv: list[str] | None = None) -> None:
    """Run one ``lmseg`` command; ``argv`` (default: the process's arguments) as typed after ``lmseg``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in HELP_FLAGS:
        print_text(_overview())
        return
    if argv[0] == "--version":
        print_text(f"lmseg {importlib.metadata.version('lmseg')}")
        return
    name, args = argv[0], argv[1:]
    if name not in COMMANDS:
        _refuse(f"unknown command {name!r}", name, COMMANDS, "", "lmseg --help lists the commands")
    command = COMMANDS[name]
    if any(a in HELP_FLAGS for a in args):
        print_text(_command_help(name, command))
        return
    _check_options(name, command, args)
    _quiet_third_party()
    import fire

    fire.Fire(command, command=args, name=f"lmseg {name}")


def _quiet_third_party() -> None:
    """Keep the console to what concerns the user's data: notices of optional GPU decoders that are absent, a
    missing patient orientation in a 2-D DICOM (the 2-D bundles need no affine; volumes come as NIfTI) and the
    weight-loading bar of Hugging Face encoders say nothing about it."""
    import logging
    import warnings

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read by huggingface_hub and transformers on import
    logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)
    for message in ("NvImgCodecPydicomReader", "PydicomReader: ImageOrientationPatient"):
        warnings.filterwarnings("ignore", message=message, category=UserWarning)


def _plain(text: str) -> str:
    """Docstring text as a terminal shows it: ``code`` and :role:`~a.b.Name` without their markup."""
    text = re.sub(r":[a-z]+:`~?(?:[\w.]+\.)?([^`]+)`", r"\1", text)
    return text.replace("``", "")


def _summary(command: Callable) -> str:
    return _plain(inspect.getdoc(command).split("\n\n")[0].replace("\n", " "))


def _overview() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {_summary(command)}" for name, command in COMMANDS.items()]
    return "\n".join(
        [
            "usage: lmseg COMMAND [options]    (lmseg COMMAND --help: its options; lmseg --version)",
            "",
            "Language-guided and retrieval-augmented segmentation bundles for MONAI.",
            "",
            "commands:",
            *lines,
        ]
    )


def _command_help(name: str, command: Callable) -> str:
    usage = [f"lmseg {name}"]
    for parameter in inspect.signature(command).parameters.values():
        if parameter.kind is parameter.VAR_POSITIONAL:
            usage.append(f"[{parameter.name.upper()} ...]")
        elif parameter.kind is parameter.VAR_KEYWORD:
            usage.append(f"[--<{'bundle' if name == 'label-app' else 'config id'}> VALUE ...]")
        elif parameter.default is parameter.empty:
            usage.append(f"--{parameter.name} {parameter.name.upper()}")
        else:
            usage.append(f"[--{parameter.name} {parameter.default!r}]")
    return f"usage: {' '.join(usage)}\n\n{_plain(inspect.getdoc(command))}"


def _check_options(name: str, command: Callable, args: list[str]) -> None:
    """Refuse an option the command does not take, naming the closest one it does (python-fire would hand it to
    ``**overrides`` as a config value, or stop with a usage dump). A command with ``**overrides`` takes the config
    ids of its bundle too; ``label-app`` takes ``--<bundle>`` for each bundle it serves."""
    parameters = inspect.signature(command).parameters.values()
    known = {p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    known |= {f"no{p.name}" for p in parameters if isinstance(p.default, bool)}  # fire's --noflag
    given = [a[2:].split("=", 1)[0].replace("-", "_") for a in args if a.startswith("--") and len(a) > 2]
    unknown = [flag for flag in given if flag not in known]
    if not unknown:
        return
    takes_more = any(p.kind is p.VAR_KEYWORD for p in parameters)
    extra, what = _extra_options(name, args) if takes_more else (set(), "")
    if extra is None:
        return  # the bundle is not known yet: the command names it
    for flag in unknown:
        if flag not in extra and flag.split("#")[0] not in extra:
            _refuse(f"lmseg {name}: unknown option --{flag}", flag, known | extra, "--", f"lmseg {name} --help{what}")


def _extra_options(name: str, args: list[str]) -> tuple[set[str] | None, str]:
    """The ``**`` options of a command: config ids of its bundle (None where no bundle is given or found) or, for
    ``label-app``, the bundle names it serves."""
    from lmseg_components.locations import TEXT_BUNDLES, bundle_folder, config_ids

    if name == "label-app":
        bundles = _option(args, "bundles") or ",".join(TEXT_BUNDLES)
        return set(bundles.split(",")), ""
    if name == "jras-bank":
        bundle = "jras_segmentation"
    else:
        bundle = _option(args, "bundle") or next((a for a in args if not a.startswith("-")), None)
    folder = bundle_folder(bundle) if bundle else None
    if folder is None:
        return None, ""
    return config_ids(folder), f"; config ids: {folder / 'configs'}"


def _option(args: list[str], name: str) -> str | None:
    """The value of ``--name value`` / ``--name=value`` in ``args``."""
    for i, arg in enumerate(args):
        if arg == f"--{name}" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


def _refuse(message: str, word: str, choices: Iterable[str], prefix: str, hint: str) -> None:
    close = difflib.get_close_matches(word, sorted(choices), n=1)
    suggestion = f"; did you mean {prefix}{close[0]}?" if close else ""
    print(f"error: {message}{suggestion} ({hint})", file=sys.stderr)
    sys.exit(2)
