"""Job files and the site's config.yaml as YAML, within bounds.

yaml.safe_load builds no objects but is still unbounded: a 400-byte file of
nested aliases ("a: &a [x, x]", "b: &b [*a, *a]", ...) expands to hundreds
of megabytes, 20,000 nested brackets exhaust the recursion limit, a
5,000-digit integer exceeds Python's int-digit limit, and a key given twice
silently drops the first value (a second `guest:` section, its candidates).
The loader here refuses each of those as invalid YAML, naming the line:

- a file larger than MAX_BYTES;
- anchors and aliases (&name, *name) and merge keys (<<): no job needs them;
- nesting deeper than MAX_DEPTH, more than MAX_NODES values;
- an integer of more than MAX_INT_CHARACTERS characters;
- a key twice in one mapping.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tempest_live_ci.errors import UsageError, shown
from tempest_live_ci.inputs import read_regular
from tempest_live_ci.lazy import lazy_module

if TYPE_CHECKING:
    import yaml
else:
    yaml = lazy_module("yaml")

MAX_BYTES = 256 * 1024
MAX_DEPTH = 16
MAX_NODES = 20_000
MAX_INT_CHARACTERS = 24
_MERGE = "tag:yaml.org,2002:merge"


@functools.cache
def bounded_loader() -> type[Any]:
    """The loader class: yaml.SafeLoader without anchors, aliases or merge keys, its depth,
    size and keys checked. Made on first use, when PyYAML is imported."""
    ComposerError = yaml.composer.ComposerError
    ConstructorError = yaml.constructor.ConstructorError

    class BoundedLoader(yaml.SafeLoader):  # type: ignore[misc]
        """SafeLoader without anchors, aliases or merge keys, its depth, size and keys checked."""

        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self._depth = 0
            self._nodes = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent):
                raise ComposerError(None, None, f"an alias (*{event.anchor}): anchors and aliases "
                                    "are not accepted", event.start_mark)
            if getattr(event, "anchor", None) is not None:
                raise ComposerError(None, None, f"an anchor (&{event.anchor}): anchors and aliases "
                                    "are not accepted", event.start_mark)
            self._nodes += 1
            if self._nodes > MAX_NODES:
                raise ComposerError(None, None, f"more than {MAX_NODES} values", event.start_mark)
            if self._depth >= MAX_DEPTH:
                raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                    event.start_mark)
            self._depth += 1
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                lines: dict[Any, int] = {}
                for key_node, _ in node.value:
                    if key_node.tag == _MERGE:
                        raise ConstructorError(None, None, "a merge key (<<): not accepted",
                                               key_node.start_mark)
                    key = self.construct_object(key_node, deep=True)
                    try:
                        first = lines.get(key)
                    except TypeError:
                        continue  # unhashable: SafeConstructor says so below
                    if first is not None:
                        raise ConstructorError(None, None, f"duplicate key {shown(key)} (first on "
                                               f"line {first + 1})", key_node.start_mark)
                    lines[key] = key_node.start_mark.line
            return super().construct_mapping(node, deep=deep)

        def construct_yaml_int(self, node: Any) -> Any:
            text = self.construct_scalar(node)
            if len(text) > MAX_INT_CHARACTERS:
                raise ConstructorError(None, None, f"an integer of {len(text)} characters (at most "
                                       f"{MAX_INT_CHARACTERS})", node.start_mark)
            return super().construct_yaml_int(node)

    BoundedLoader.add_constructor("tag:yaml.org,2002:int", BoundedLoader.construct_yaml_int)
    return BoundedLoader


def read_yaml(path: Path) -> Any:
    """A YAML file's data; an unreadable, oversized or invalid file is a UsageError
    naming the file (and the line)."""
    data = read_regular(path, None, limit=MAX_BYTES, follow=True)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 text: {e.reason} at byte {e.start}") from None
    loader = bounded_loader()(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UsageError(f"{where}: invalid YAML: {problem}") from None
    finally:
        loader.dispose()
