"""The package's floors: a module imports only from its own floor or those below it (lazy imports inside functions
included), so a library floor never depends on the apps built on it. The floors are written down here, once,
lowest first; docs/development.md points here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "lmseg_components"

FLOORS = (
    (
        "arguments",
        "console",
        "errors",
        "files",
        "fingerprint",
        "locations",
        "devices",
        "open_clip_weights",
    ),  # plain helpers
    ("text", "metrics", "losses", "networks"),
    ("data", "retrieval", "inferers", "outputs"),  # ... and the inferers and output-writing transforms of configs
    ("engines",),  # MONAI / Ignite trainers and handlers
    ("workflows",),  # a bundle's configs parsed and run
    ("runs",),  # a trained run: its record and the bundle loaded with its values
    ("export",),
    ("inference",),  # predictors, the Segmenter API, overlays, DICOM SEG
    ("apps",),  # cli, segment, serve, publish, bank, bundle checks, MONAI Label and Deploy apps
)
FLOOR = {unit: level for level, units in enumerate(FLOORS) for unit in units}


def _unit(module: str) -> str:
    """The unit of ``lmseg_components.<unit>[.<...>]`` (a subpackage or a top-level module)."""
    return module.split(".")[1]


def _imports(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, module) of every ``lmseg_components`` import in ``path`` (a file under ``root``), at any depth of
    the file."""
    module = ".".join(path.relative_to(root).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "lmseg_components":  # from lmseg_components import sub
                found += [(node.lineno, f"lmseg_components.{alias.name}") for alias in node.names]
            elif target.startswith("lmseg_components."):
                found.append((node.lineno, target))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("lmseg_components.")]
    return found


def upward_imports(package: Path = PACKAGE) -> list[str]:
    """Each import from a lower floor to a higher one, as ``file:line: unit (floor) imports unit (floor)``."""
    problems = []
    for path in sorted(package.rglob("*.py")):
        if path.parent == package and path.name == "__init__.py":
            continue  # the package's facade: lazy attribute access to the Python API, no imports of its own
        source = _unit(".".join(path.relative_to(package.parent).with_suffix("").parts))
        for line, target in _imports(path, package.parent):
            if FLOOR[_unit(target)] > FLOOR[source]:
                where = f"{path.relative_to(package.parent)}:{line}"
                problems.append(
                    f"{where}: {source} (floor {FLOOR[source]}) imports {target} (floor {FLOOR[_unit(target)]})"
                )
    return problems


def test_every_unit_of_the_package_is_on_a_floor():
    units = {
        p.stem if p.is_file() else p.name
        for p in PACKAGE.iterdir()
        if p.suffix == ".py" or (p / "__init__.py").is_file()
    }
    units.discard("__init__")
    assert units == set(FLOOR), f"on no floor: {sorted(units - set(FLOOR))}; gone: {sorted(set(FLOOR) - units)}"


def test_no_module_imports_from_a_higher_floor():
    assert upward_imports() == []


def test_an_upward_import_is_found_even_inside_a_function(tmp_path):
    package = tmp_path / "lmseg_components"
    (package / "engines").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "engines" / "__init__.py").write_text("")
    (package / "engines" / "handler.py").write_text(
        "from lmseg_components.files import atomic_write\n\n\ndef f():\n    from ..apps import segment\n"
    )
    (package / "files.py").write_text("")
    assert upward_imports(package) == [
        "lmseg_components/engines/handler.py:5: engines (floor 3) imports lmseg_components.apps (floor 8)"
    ]


def test_the_development_docs_list_the_floors_in_this_order():
    docs = (PACKAGE.parent / "docs" / "development.md").read_text()
    paragraph = docs.split("The package is built in floors, lowest first:", 1)[1].split("A module imports", 1)[0]
    named = re.findall(r"`([a-z_]+)`", paragraph)
    assert named == [unit for units in FLOORS for unit in units]


def test_every_unit_a_bundle_config_names_is_reachable_after_a_plain_import():
    """Configs write ``$lmseg_components.<unit>.<name>`` after ``$import lmseg_components``: each such unit is one
    the package imports on attribute access (seen failing with ``runs`` missing from them)."""
    import lmseg_components

    bundles = PACKAGE.parent / "bundles"
    text = " ".join(p.read_text() for p in bundles.glob("*/configs/*.json"))
    units = set(re.findall(r"lmseg_components\.(\w+)\.", text))
    assert {"engines", "runs", "outputs"} <= units
    assert not sorted(units - set(lmseg_components.LAZY_UNITS)), "configs name units the package does not load"
