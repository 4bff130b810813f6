"""TOML for every Python that runs the build: tomllib (3.11+), else tomli, else a minimal reader.

PlatformIO may run pio_build.py (and so pytools.boards and pytools.build.manifest) under a
Python older than 3.11, which has no tomllib. The minimal reader covers what boards/*.toml and
firmware/build.toml use: tables, arrays of tables, strings, integers (with _ and 0x), floats,
booleans, one-line and multi-line arrays, comments. tests/test_build.py holds it to tomllib.
"""

from __future__ import annotations

import ast
import re
from typing import Any

try:
    import tomllib as _toml  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # Python < 3.11
    try:
        import tomli as _toml  # type: ignore[import-not-found,no-redef,unused-ignore]
    except ImportError:
        _toml = None  # type: ignore[assignment]


class TOMLDecodeError(ValueError):
    pass


def loads(text: str) -> dict[str, Any]:
    if _toml is not None:
        try:
            return _toml.loads(text)
        except _toml.TOMLDecodeError as e:
            raise TOMLDecodeError(str(e)) from None
    return minimal_loads(text)


def _strip_comment(line: str) -> str:
    out, quote = [], None
    for ch in line:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        out.append(ch)
    return "".join(out).strip()


def _value(text: str, where: int) -> Any:
    t = text.strip()
    if t in ("true", "false"):
        return t == "true"
    if t.startswith("["):
        inner = t[1:-1].strip().rstrip(",")
        items, depth, cur, quote = [], 0, "", None
        for ch in inner:
            if quote:
                quote = None if ch == quote else quote
            elif ch in "\"'":
                quote = ch
            elif ch == "[":
                depth += 1
            elif ch == "]":
                depth -= 1
            elif ch == "," and depth == 0:
                items.append(cur)
                cur = ""
                continue
            cur += ch
        if cur.strip():
            items.append(cur)
        return [_value(i, where) for i in items]
    if t.startswith('"') or t.startswith("'"):
        return ast.literal_eval(t)
    n = t.replace("_", "")
    try:
        return int(n, 0)
    except ValueError:
        pass
    try:
        return float(n)
    except ValueError:
        raise TOMLDecodeError(f"line {where}: cannot read the value {t!r}") from None


def minimal_loads(text: str) -> dict[str, Any]:
    root: dict[str, Any] = {}
    table = root
    pending = ""
    for no, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw)
        if pending:
            pending += " " + line
            if pending.count("[") > pending.count("]"):
                continue
            line, pending = pending, ""
        if not line:
            continue
        m = re.fullmatch(r"\[\[\s*([\w.\-]+)\s*\]\]", line) or re.fullmatch(r"\[\s*([\w.\-]+)\s*\]", line)
        if m:
            *parents, last = m[1].split(".")
            t = root
            for p in parents:
                t = t.setdefault(p, {})
                t = t[-1] if isinstance(t, list) else t
            if line.startswith("[["):
                t.setdefault(last, []).append({})
                table = t[last][-1]
            else:
                table = t.setdefault(last, {})
            continue
        key, eq, value = line.partition("=")
        if not eq:
            raise TOMLDecodeError(f"line {no}: expected key = value, found {line!r}")
        if value.strip().startswith("[") and value.count("[") > value.count("]"):
            pending = line
            continue
        table[key.strip().strip('"')] = _value(value, no)
    return root
