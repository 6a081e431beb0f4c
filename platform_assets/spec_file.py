"""Reading one `deliverable.yaml`, which its team writes and the platform must not trust.

Whatever the file is (not a regular file, too big, not UTF-8, a YAML alias bomb, a value the
YAML constructor rejects), reading it gives a value or one `SpecFileError`, never an exception
that would take the catalog, and with it the code location, down.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

# A spec is a page of YAML (the demo's are under 2 KiB); data and code belong beside it, not in it.
MAX_SPEC_BYTES = 64 * 1024


class SpecFileError(Exception):
    """Why a spec file gives no document; the message says what to do."""


class _SpecLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader (libyaml's parser when present), refusing duplicate keys: YAML keeps the last
    value of a repeated key, so a reviewer would read one owner and the platform use another."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping = super().construct_mapping(node, deep)
        if len(mapping) < len(node.value):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.constructed_objects.get(key_node, key_node.value)
                if key in seen:
                    raise SpecFileError(f"the key '{key}' appears twice (line {key_node.start_mark.line + 1}); "
                                        "YAML keeps only the last one, so remove the other")
                seen.add(key)
        return mapping


def read_spec(path: Path, max_bytes: int = MAX_SPEC_BYTES) -> Any:
    """The YAML document in `path`, read without following it anywhere unsafe."""
    text = _decode(_read_bytes(path, max_bytes))
    try:
        return yaml.load(text, Loader=_AliasRefusingLoader if "*" in text else _SpecLoader)
    except yaml.YAMLError as exc:
        raise SpecFileError(f"not valid YAML: {_one_line(exc)}") from None
    except ValueError as exc:  # a scalar the constructor cannot build, e.g. the date 2024-02-30
        raise SpecFileError(f"not valid YAML: {exc}; quote the value to make it a string") from None


def _one_line(exc: yaml.YAMLError) -> str:
    """What the parser found and where, on one line (its own text spans several)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        context = f"{exc.context}: " if exc.context else ""
        mark = exc.problem_mark
        return f"{context}{exc.problem}" + (f" (line {mark.line + 1}, column {mark.column + 1})" if mark else "")
    return " ".join(str(exc).split())


def _read_bytes(path: Path, max_bytes: int) -> bytes:
    """At most `max_bytes` of a regular file; opened non-blocking, so a FIFO cannot hang the load."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        target = f" (a symlink to {os.readlink(path)})" if path.is_symlink() else ""
        raise SpecFileError(f"cannot be read{target}: {exc.strerror}; a spec is a readable YAML file") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise SpecFileError("is a folder; a spec is a YAML file named deliverable.yaml")
        if not stat.S_ISREG(mode):
            raise SpecFileError("is not a regular file (a FIFO, socket or device); a spec is a YAML file")
        data = b""
        while len(data) <= max_bytes and (chunk := os.read(fd, max_bytes + 1 - len(data))):
            data += chunk
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise SpecFileError(f"is larger than {max_bytes // 1024} KiB, the limit for this file; "
                            "keep data and code in files beside it")
    return data


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise SpecFileError(f"byte 0x{data[exc.start]:02X} on line {line} is not UTF-8; save the file as UTF-8") \
            from None


class _AliasRefusingLoader(_SpecLoader):
    """Also refuses aliases, caught while constructing (no second parse). An alias (`*name`) makes
    two places share one node, which is how a small file expands into gigabytes ("billion laughs")
    once something walks the result. Only a text with a `*` can hold one, so only such specs pay
    for the check on every node."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        if node in self.constructed_objects or node in self.recursive_objects:
            raise SpecFileError(f"uses a YAML alias of the value on line {node.start_mark.line + 1}; aliases "
                                "(*name) are not allowed in a spec, write the value out")
        return super().construct_object(node, deep)
