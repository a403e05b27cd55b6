"""Third-party libraries loaded on first use.

    if TYPE_CHECKING:
        import libvirt
    else:
        libvirt = lazy_module("libvirt")

binds a stand-in that imports the library the first time one of its names
is read (libvirt.open, except libvirt.libvirtError). A module that uses
libvirt, paramiko, jinja2, python-subunit, python-debian or PyYAML imports
at its top every module of this package it needs and costs nothing more
until one of its functions runs: `--help` and bash completion load no such
library (tests/unit/test_cli_imports.py), and a command loads only those it
uses (`results junit`: subunit, not libvirt).

A library that is not installed fails where it is first used, not where the
stand-in is bound: code that does without it asks installed() first.

For libraries only: the package's own modules are imported with `import`
statements, which tests/unit/test_import_graph.py reads.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Any


class LazyModule(ModuleType):
    """Stands for a module not imported yet; reading, setting or deleting one of
    its names imports it (once: importlib keeps it in sys.modules)."""

    def _module(self) -> ModuleType:
        return importlib.import_module(self.__name__)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._module(), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._module(), name)

    def __repr__(self) -> str:
        return f"<lazily imported module {self.__name__!r}>"


def lazy_module(name: str) -> ModuleType:
    """The module `name` (a library, not one of this package's), imported on first use."""
    if name.split(".")[0] == __name__.split(".")[0]:
        raise ValueError(f"{name}: the package's own modules are imported at the top of a module")
    return LazyModule(name)


def installed(name: str) -> bool:
    """Can `name` be imported (without importing it)?"""
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # a submodule of a package that is not there
        return False


def package_attributes(package: str, where: dict[str, str]) -> Any:
    """A package's __getattr__ (PEP 562) that imports `name` from its module `where[name]`
    on first use, and keeps it among the package's names."""
    def attribute(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(importlib.import_module(package), name, value)
        return value
    return attribute
