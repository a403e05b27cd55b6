"""lazy.py: a library bound at the top of a module is imported when one of its names is read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import tempest_live_ci
from tempest_live_ci.lazy import installed, lazy_module

# Where tempest_live_ci is imported from: the source tree, or the installed package
# under autopkgtest (tests/ copied away from the tree).
PACKAGE_PARENT = Path(tempest_live_ci.__file__).resolve().parents[1]


def test_the_library_is_imported_on_first_use() -> None:
    # A fresh interpreter: colorsys is imported by nothing else.
    code = ("import sys\n"
            "from tempest_live_ci.lazy import lazy_module\n"
            "colorsys = lazy_module('colorsys')\n"
            "print('colorsys' in sys.modules)\n"
            "print(colorsys.rgb_to_hsv(1, 0, 0))\n"
            "print('colorsys' in sys.modules, colorsys.ONE_THIRD == sys.modules['colorsys'].ONE_THIRD)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=PACKAGE_PARENT, timeout=60, check=True)
    assert result.stdout.splitlines() == ["False", "(0.0, 1.0, 1)", "True True"]


def test_names_set_on_the_stand_in_are_the_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    import textwrap

    wrap = lazy_module("textwrap")
    monkeypatch.setattr(wrap, "dedent", lambda text: "patched")
    assert textwrap.dedent("x") == "patched"
    monkeypatch.undo()
    assert textwrap.dedent("  x") == "x"


def test_a_missing_library_fails_where_it_is_used() -> None:
    missing = lazy_module("tlc_no_such_library")
    assert not installed("tlc_no_such_library") and not installed("tlc_no_such_library.sub")
    assert installed("json")
    with pytest.raises(ModuleNotFoundError):
        missing.anything  # noqa: B018


def test_the_packages_own_modules_are_not_lazy() -> None:
    with pytest.raises(ValueError, match="imported at the top"):
        lazy_module("tempest_live_ci.vm.boot")
