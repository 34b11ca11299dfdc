"""Names a package exports from its modules, imported when first used, not with the package.

`import taskstash` should cost what decorating a function needs; the index, the storages and
the serializers are loaded by the first call that uses them.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """A module's `__getattr__` and `__dir__` for `package`.

    `exports` maps each lazily imported name to the module holding it. A name is imported on
    its first use and kept in the package, so later uses cost nothing; `dir()` lists them all
    from the start.
    """

    def __getattr__(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__
