"""Importable module names: what a script's `__main__` would be called if it were imported.

Keys never hold paths: a function is named by its importable `module.qualname`, the same for a
file run as a script (`python pipeline.py`), run as a module (`python -m pipeline`) or imported.
"""

from __future__ import annotations

import os
import sys

__all__ = ["importable_module_name", "module_name_of_file"]


def importable_module_name(module: str) -> str:
    """The name under which `module` would be imported: `__main__` resolved, if it can be.

    `python -m pkg.mod` records the real name on `__main__.__spec__`; `python path/to/mod.py`
    does not, so the name is made from the file: its stem, under the packages (directories with
    an `__init__.py`) that contain it. `__main__` with no file (a REPL, a notebook) stays
    `__main__`.
    """
    if module != "__main__":
        return module
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None)
    if isinstance(name, str) and name and name != "__main__":
        return name
    file = getattr(main, "__file__", None)
    if not isinstance(file, str) or not file.endswith(".py"):
        return module
    return module_name_of_file(file)


def module_name_of_file(file: str | os.PathLike[str]) -> str:
    """The dotted name that importing `file` from the directory above its packages gives."""
    path = os.path.realpath(os.fspath(file))
    directory, base = os.path.split(path)
    parts = [os.path.splitext(base)[0]]
    while os.path.isfile(os.path.join(directory, "__init__.py")):
        directory, package = os.path.split(directory)
        if not package:
            break
        parts.append(package)
    return ".".join(reversed(parts))
