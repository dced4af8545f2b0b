"""The wheel carries the checkout's policies/ and examples/ inside the package, as pdp/_data/, so
an installed `pdp` has its embedded default (pdp/opa/binary.py: PROJECT_ROOT). Everything else is
in pyproject.toml; the sdist carries both folders (MANIFEST.in), so a wheel built from it has them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DATA = ("policies", "examples")


class BuildPyWithData(build_py):  # type: ignore[misc]
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return  # an editable install reads them from the checkout
        target = Path(self.build_lib) / "pdp" / "_data"
        for name in DATA:
            source = Path(name)
            if not source.is_dir():
                raise SystemExit(f"setup.py: {name}/ is missing: the wheel would have no embedded default")
            shutil.rmtree(target / name, ignore_errors=True)
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))


setup(cmdclass={"build_py": BuildPyWithData})
