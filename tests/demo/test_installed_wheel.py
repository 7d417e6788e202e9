"""crowdvlm built as a wheel and installed outside the checkout runs its commands: nothing reads the source tree.

The wheel is built from a copy of the sources (so the build leaves nothing in the checkout) and installed with
``pip install --no-deps --target SITE``: a folder holding crowdvlm alone, put first on ``PYTHONPATH``; its
dependencies come from the running environment. Every command runs from a working folder outside the
checkout, and the first test checks that ``import crowdvlm`` resolves to SITE, not to the checkout.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from demo_helpers import TOY  # the toy sizes of the demo test

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "crowdvlm"


class Installed:
    """The installed package: ``run(*args)`` runs its ``crowdvlm`` script from a folder outside the checkout."""

    def __init__(self, site: Path, work: Path):
        self.site, self.work = site, work
        self.env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}

    def python(self, code: str) -> str:
        return self._check([sys.executable, "-c", code])

    def run(self, *args: str, timeout: int = 600) -> str:
        return self._check([sys.executable, str(self.site / "bin" / "crowdvlm"), *args], timeout=timeout)

    def _check(self, cmd: list[str], timeout: int = 600) -> str:
        done = subprocess.run(
            cmd, cwd=self.work, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, f"{cmd[1:]} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", str(source), "-w", str(tmp / "dist")],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp / "dist").glob("crowdvlm-*.whl")
    site = tmp / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, capture_output=True
    )
    work = tmp / "work"
    work.mkdir()
    return Installed(site, work)


def test_the_installed_package_is_the_one_imported(installed):
    where = Path(installed.python("import crowdvlm; print(crowdvlm.__file__)").strip())
    assert where.is_relative_to(installed.site), where
    assert not where.is_relative_to(ROOT)


def test_no_module_reaches_above_the_package():
    """``Path(__file__).parents[k]`` outside crowdvlm/ would read the source tree, absent once installed."""
    for path in PACKAGE.rglob("*.py"):
        depth = len(path.relative_to(PACKAGE).parts)  # parents[depth - 1] is crowdvlm/ itself
        from_file = [line for line in path.read_text(encoding="utf-8").splitlines() if "__file__" in line]
        for k in re.findall(r"parents\[(\d+)\]", "\n".join(from_file)):
            assert int(k) < depth, f"{path}: parents[{k}] is outside the package"


def test_installed_app_help(installed):
    assert "--model" in installed.run("app", "--help")


def test_installed_shipped_experiment_checks(installed):
    """By name: the pointing experiment, whose arms use the package's pointing recipes and pointing base."""
    out = installed.run("experiment", "check", "pointing")
    assert "is valid" in out and str(installed.site) in out  # the shipped file, inside the installed package


def test_installed_demo_runs_a_toy_size(installed):
    """``crowdvlm demo --experiment`` with a file that extends the installed demo_quick.yaml (``extends:
    package:...``), as a user would shrink the demo."""
    quick = installed.python("from crowdvlm.demo import QUICK_FILE; print(QUICK_FILE)").strip()
    assert Path(quick).is_relative_to(installed.site)
    (installed.work / "toy.yaml").write_text(TOY.format(quick="package:recipes/experiments/demo_quick.yaml"))
    out = installed.run("demo", "--experiment", "toy.yaml", "--no-progress", "--out", "demo")
    assert "C1" in out and "report:" in out
    assert (installed.work / "demo" / "report" / "report.md").is_file()


@pytest.mark.slow
def test_installed_demo_quick(installed):
    """The real ``crowdvlm demo --quick`` from the installed wheel (45 s alone on 2 cores; longer under load)."""
    out = installed.run("demo", "--quick", "--no-progress", timeout=1800)
    assert "C1" in out and (installed.work / "runs" / "demo-quick" / "report" / "report.md").is_file()
