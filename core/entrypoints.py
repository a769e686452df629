"""Plugins from other distributions: entry-point groups, each mapping a name (an evaluator kind,
a proposer kind, a decision rule) to a module, read beside a registry's built-in names.

A scan of the installed distributions takes milliseconds and registries are asked several times
an experiment: a group is read again only when a folder of `sys.path` changed (an install or an
uninstall touches its folder) or the path itself did, so that a plugin installed while a process
runs is still seen by its next study.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import warnings
from collections.abc import Iterator, Mapping
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType


class PluginError(ValueError):
    """A plugin that cannot be used; the message names it and its distribution."""


def _origin(entry: EntryPoint) -> str:
    return entry.dist.name if entry.dist else "an unknown distribution"


def _path_stamp() -> tuple[tuple[str, int], ...]:
    """sys.path with each folder's modification time: what an install or uninstall changes."""
    stamp = []
    for folder in sys.path:
        try:
            stamp.append((folder, os.stat(folder or ".").st_mtime_ns))
        except OSError:
            stamp.append((folder, 0))
    return tuple(stamp)


@functools.lru_cache(maxsize=16)
def _scan(group_name: str, stamp: tuple[tuple[str, int], ...]) -> tuple[EntryPoint, ...]:
    return tuple(entry_points(group=group_name))


def _declared(group_name: str) -> dict[str, EntryPoint]:
    """Entry name -> its entry point; two distributions may not declare one name."""
    found: dict[str, EntryPoint] = {}
    for entry in _scan(group_name, _path_stamp()):
        other = found.setdefault(entry.name, entry)
        if other.value != entry.value:
            raise PluginError(
                f"{group_name}: {entry.name} is declared by both {_origin(other)} "
                f"({other.value}) and {_origin(entry)} ({entry.value}); uninstall one"
            )
        if entry.attr:
            raise PluginError(
                f"{group_name}: {entry.name} (from {_origin(entry)}) is {entry.value!r}; "
                f"its value must name a module, without ':{entry.attr}'"
            )
    return found


def group(name: str) -> dict[str, str]:
    """Entry name -> module path, over the entry points of every installed distribution."""
    return {entry: point.value for entry, point in _declared(name).items()}


def origin(group_name: str, entry: str) -> str:
    """The distribution that declares `entry` in the group, for messages."""
    return _origin(_declared(group_name)[entry])


class Registry(Mapping[str, str]):
    """A registry's names -> module paths: its built-ins, then the plugins of an entry-point
    group. A built-in's name stays the built-in's: a plugin that declares it is skipped, with a
    warning, so that no installed package can replace a kind of ours."""

    def __init__(self, what: str, group_name: str, built_in: dict[str, str]) -> None:
        self.what = what  # "evaluator kind": how messages name an entry
        self.group_name = group_name
        self.built_in = built_in

    def _all(self) -> dict[str, str]:
        plugins = group(self.group_name)
        for name in sorted(plugins.keys() & self.built_in.keys()):
            warnings.warn(
                f"the plugin {self.what} {name} (from {origin(self.group_name, name)}) is "
                f"ignored: {name} is a built-in {self.what}",
                stacklevel=3,
            )
        return self.built_in | {k: v for k, v in plugins.items() if k not in self.built_in}

    def __getitem__(self, name: str) -> str:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def load(self, name: str) -> ModuleType:
        """The module of `name`; a plugin that fails to import is named with its distribution."""
        known = self._all()
        if name not in known:
            raise ValueError(f"unknown {self.what} {name!r}; choose one of {', '.join(known)}")
        module = known[name]
        if name in self.built_in:  # its own failures (an optional package) are the caller's
            return importlib.import_module(module)
        try:
            return importlib.import_module(module)
        except Exception as exc:
            raise PluginError(
                f"the plugin {self.what} {name} (module {module}, from the distribution "
                f"{origin(self.group_name, name)}) failed to import: {exc!r}"
            ) from exc
