"""YAML as gridrun reads it: plain data only, bounded in size, every key given once.

A grid file is data, never code: PyYAML's safe loader (no python/object tags), a byte limit
checked before a byte is read, and a node limit after alias expansion ("billion laughs"). Every
problem is a `GridError` naming the file and, where YAML knows it, the line.
"""
from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Any

import yaml

from ..errors import GridError

MAX_FILE_BYTES = 1_000_000
MAX_YAML_NODES = 100_000  # after alias expansion: refuses "billion laughs" documents


class _SafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader (no python/object tags) that also counts nodes through aliases,
    refuses a key given twice in one mapping (YAML would silently keep the last), and reads
    `1e-3` as the number users mean (YAML 1.1 wants `1.0e-3`)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in seen:
                        raise GridError(f"key {quoted(key)} given twice in one mapping (lines "
                                        f"{seen[key] + 1} and {key_node.start_mark.line + 1})")
                    seen[key] = key_node.start_mark.line
                except TypeError:  # an unhashable key: the constructor reports it
                    pass
        return super().construct_mapping(node, deep)


_SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def quoted(text) -> str:
    """What the user typed, safe to print on one line: quoted, with newlines and control
    characters (ANSI escapes) escaped."""
    return repr(str(text)) if any(not c.isprintable() for c in str(text)) else f"'{text}'"


def _expanded_size(node, memo: dict) -> int:
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 1  # a cycle counts once (and would be refused by the walk below anyway)
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(n, memo) for n in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    else:
        size = 1
    memo[id(node)] = size
    return size


def read_yaml(text: str, where: str) -> Any:
    """Parse YAML safely: only plain data, and no document that grows huge through aliases."""
    if len(text.encode()) > MAX_FILE_BYTES:
        raise GridError(f"file is larger than {MAX_FILE_BYTES:,} bytes", where)
    try:
        loader = _SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            size = _expanded_size(node, {})
            if size > MAX_YAML_NODES:
                raise GridError(f"YAML expands to {size:,} nodes through aliases "
                                f"(limit {MAX_YAML_NODES:,}); refusing it", where)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except RecursionError:
        raise GridError("YAML nested too deeply (over about 900 levels); refusing it",
                        where) from None
    except GridError as e:  # from the loader: a key given twice
        raise GridError(str(e), where) from None
    except yaml.constructor.ConstructorError as e:
        tag = getattr(e.problem_mark, "line", None)
        line = f" (line {tag + 1})" if tag is not None else ""
        raise GridError(f"unsafe or unsupported YAML{line}: {e.problem}", where) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise GridError(f"invalid YAML:{line} {problem}", where) from None


def read_grid_file(path: Path, where: str) -> str:
    """The text of a grid file: a regular file (a FIFO would block forever, /dev/zero never
    ends) of at most MAX_FILE_BYTES, checked before a byte is read."""

    try:
        info = path.stat()
    except FileNotFoundError:
        raise GridError("no such grid file", where) from None
    except OSError as e:
        raise GridError(f"cannot read grid file: {e.strerror or e}", where) from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise GridError(f"{kind}; give a YAML grid file", where)
    if info.st_size > MAX_FILE_BYTES:
        raise GridError(f"file is larger than {MAX_FILE_BYTES:,} bytes", where)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(MAX_FILE_BYTES + 1)
    except UnicodeDecodeError:
        raise GridError("not UTF-8 text; give a YAML grid file", where) from None
    except OSError as e:
        raise GridError(f"cannot read grid file: {e.strerror or e}", where) from None
