"""A Python hook, `module:function` or `path/to/file.py:function`, for any data the file
formats do not cover (an audio front end, a database, a proprietary recorder's files).

The function is called with no arguments and returns (x, y), (x_train, y_train, x_test,
y_test), or a dict with those keys; arrays or anything numpy.asarray takes. A module name is
imported as usual, the current folder first on the path (as `python -m` would); a file path
is imported from that file without being left in sys.modules or on sys.path.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from datasets import DataError
from datasets.files.arrays import GIVEN, WHOLE, from_mapping, one_line
from datasets.files.raw import Raw

SPEC = re.compile(r"^(?P<module>[A-Za-z_][\w.]*|[^:]+\.py):(?P<function>[A-Za-z_]\w*)$")


def is_hook(spec: str) -> bool:
    return SPEC.match(spec) is not None


@contextmanager
def _importing() -> Iterator[None]:
    """While importing a hook: the current folder first on sys.path, and no __pycache__
    written next to the user's files (loading writes nothing); both as they were afterwards."""
    saved, bytecode = list(sys.path), sys.dont_write_bytecode
    sys.path.insert(0, os.getcwd())
    sys.dont_write_bytecode = True
    try:
        yield
    finally:
        sys.path[:] = saved
        sys.dont_write_bytecode = bytecode


def _module(spec: str, name: str) -> ModuleType:
    if name.endswith(".py"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise DataError(f"hook {spec}: no file {path}: give an existing .py file, or a module name")
        unique = f"_tinytrain_hook_{abs(hash(str(path.resolve())))}"
        loader_spec = importlib.util.spec_from_file_location(unique, path)
        assert loader_spec is not None and loader_spec.loader is not None
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[unique] = module  # dataclasses and pickling look their module up there
        try:
            with _importing():
                loader_spec.loader.exec_module(module)
        except Exception as e:
            raise DataError(f"hook {spec}: importing {path} failed: {type(e).__name__}: {one_line(e)}") from e
        finally:
            sys.modules.pop(unique, None)
        return module
    try:
        with _importing():
            return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name is not None and not name.startswith(e.name):  # the hook's own import failed
            raise DataError(f"hook {spec}: importing '{name}' failed: {one_line(e)}: install it") from e
        raise DataError(
            f"hook {spec}: cannot import module '{name}' ({one_line(e)}): run from the folder that "
            f"holds it, add it to PYTHONPATH, or give its file: path/to/{name.split('.')[-1]}.py:function"
        ) from e
    except Exception as e:
        raise DataError(f"hook {spec}: importing '{name}' failed: {type(e).__name__}: {one_line(e)}") from e


def read(spec: str) -> Raw:
    match = SPEC.match(spec)
    if match is None:
        raise DataError(f"'{spec}' is not a hook: write module:function or path/to/file.py:function")
    module = _module(spec, match["module"])
    function: Callable[[], Any] | None = getattr(module, match["function"], None)
    if not callable(function):
        raise DataError(f"hook {spec}: module {match['module']} has no function '{match['function']}'")
    try:
        result = function()
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"hook {spec}: the function raised {type(e).__name__}: {one_line(e)}") from e
    if isinstance(result, Mapping):
        return from_mapping(result, f"hook {spec}", "hook", "key")
    if isinstance(result, tuple | list) and len(result) in (2, 4):
        keys = WHOLE if len(result) == 2 else GIVEN
        return from_mapping(dict(zip(keys, result, strict=True)), f"hook {spec}", "hook", "key")
    what = f"a {len(result)}-tuple" if isinstance(result, tuple | list) else type(result).__name__
    raise DataError(
        f"hook {spec}: returned {what}: return (x, y), (x_train, y_train, x_test, y_test) or a dict "
        "with those keys"
    )
