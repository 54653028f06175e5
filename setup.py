"""Build hook (the project's settings are in pyproject.toml): a wheel carries the bundles inside the package, as
``lmseg_components/bundles``, so an installed lmseg finds them (:data:`lmseg_components.locations.BUNDLES_DIR`);
a source checkout and an editable install read ``bundles/`` beside the package."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithBundles(build_py):
    def run(self):
        super().run()
        if not self.editable_mode:
            target = Path(self.build_lib) / "lmseg_components" / "bundles"
            # a bundle's configs, docs and license; never what runs write into a bundle folder (.gitignore's list)
            outputs = shutil.ignore_patterns("__pycache__", "models", "eval", "data", "cache")
            shutil.copytree("bundles", target, dirs_exist_ok=True, ignore=outputs)


setup(cmdclass={"build_py": BuildWithBundles})
