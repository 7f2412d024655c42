"""Read a suite file as plain data, refusing anything hostile or absurd with a located message.

``yaml.safe_load`` never runs code, but it is not safe against the rest: a non-UTF-8 byte raises
before any YAML handler sees it, 1,000 nested brackets overflow the recursion limit, an alias
bomb expands to gigabytes (and is then quoted whole in an error), a duplicate key silently keeps
the last value, and a 50 MB list is built whole before anything can say no. So a suite is read
here in three bounded steps, each ending in valid data or a ``UserInputError`` naming the file
and, where it can, the line or the field path:

1. bytes -> text: a size limit, UTF-8 (a BOM is allowed; UTF-16/32 only with a BOM), and no
   control characters.
2. events: the parser's event stream is consumed lazily and abandoned as soon as the nesting
   depth or the number of events passes its limit, so nothing is built for a file that is too
   big or too deep, and one document only.
3. nodes -> data: the composed node graph is turned into Python data here rather than by a
   constructor, so only plain-data tags are accepted, duplicate keys are caught, keys must be
   strings, and aliases are counted by the size they expand to (memoized per node, never
   expanded to be counted).

This module imports nothing from gradatlas but ``gradatlas.errors`` and no torch, so it is cheap
to import from the CLI and from tests.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from gradatlas.errors import UserInputError, short_repr

MAX_SUITE_BYTES = 64 * 1024 * 1024  # a suite is a few KiB; 64 MiB still admits a 50 MB comment
MAX_DEPTH = 64  # nested lists/mappings; a suite needs about 4
# Parser events, about one per value; a suite has a few hundred. 500k bounds the worst file the
# reader accepts to about 3 s and 250 MB (the composed node graph costs ~330 bytes a value).
MAX_EVENTS = 500_000
MAX_EXPANDED_NODES = 100_000  # nodes that aliases add when expanded; legit reuse adds a few dozen

EMPTY_MESSAGE = "empty file (a suite is a YAML mapping with at least 'name')"

# Pure-Python classes only where PyYAML was built without libyaml: the C parser is what makes a
# 50 MB file of comments a fraction of a second instead of a minute.
_LOADER: type = yaml.CSafeLoader if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader

_YAML = "tag:yaml.org,2002:"
_STR, _MAP, _SEQ, _MERGE = _YAML + "str", _YAML + "map", _YAML + "seq", _YAML + "merge"
# The scalar tags a suite may use, and what to call a value of each in a message.
_SCALAR_KINDS = {
    _STR: "a string",
    _YAML + "int": "an integer",
    _YAML + "float": "a number",
    _YAML + "bool": "a boolean",
    _YAML + "null": "null",
    _YAML + "timestamp": "a date",
}
_CONSTRUCTOR = SafeConstructor()  # only its scalar methods are used: they build no objects
_SCALAR_CONSTRUCTORS = {
    _STR: _CONSTRUCTOR.construct_yaml_str,
    _YAML + "int": _CONSTRUCTOR.construct_yaml_int,
    _YAML + "float": _CONSTRUCTOR.construct_yaml_float,
    _YAML + "bool": _CONSTRUCTOR.construct_yaml_bool,
    _YAML + "null": _CONSTRUCTOR.construct_yaml_null,
    _YAML + "timestamp": _CONSTRUCTOR.construct_yaml_timestamp,
}

# Characters YAML does not allow in a stream (C0 but tab/LF/CR, DEL, C1 but NEL, surrogates,
# U+FFFE/U+FFFF): checked up front so the message has a line and column and the parser never
# sees them.
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]")
_BOMS = (  # UTF-32 first: its little-endian BOM starts with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF32_BE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF8, "utf-8-sig", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16", "UTF-16"),
)
_MAX_PATH = 300  # characters of a field path in a message
_MAX_PROBLEM = 300  # characters of a parser's own message (it may quote an anchor name)


# -- public API ----------------------------------------------------------------------------------
def read_suite_yaml(path: Path) -> tuple[str, Any]:
    """``(text as decoded, data)`` of a suite file: the text is what gets archived with a sweep
    (BOM removed), the data is plain dicts/lists/scalars with a mapping at the top. Raises
    ``UserInputError(source=str(path), field=...)`` for anything else."""
    source = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_SUITE_BYTES:
            raise _too_big(size, source)
        with path.open("rb") as f:
            data = f.read(MAX_SUITE_BYTES + 1)  # bounded even where st_size lies (a pipe)
    except OSError as exc:
        raise UserInputError(
            f"cannot read the file: {exc.strerror or type(exc).__name__}", source=source
        ) from None
    if len(data) > MAX_SUITE_BYTES:
        raise _too_big(len(data), source)
    text = _decode(data, source)
    del data
    return text, _parse_text(text, source, require_mapping=True)


def parse_suite_yaml(
    text_or_bytes: str | bytes, source: str, *, require_mapping: bool = True
) -> Any:
    """The data of a suite given in memory, with every check ``read_suite_yaml`` makes.

    ``require_mapping=False`` accepts any top-level value (an empty document is then ``None``),
    for YAML fragments such as a ``--set`` override's value."""
    if isinstance(text_or_bytes, bytes | bytearray):
        if len(text_or_bytes) > MAX_SUITE_BYTES:
            raise _too_big(len(text_or_bytes), source)
        text = _decode(bytes(text_or_bytes), source)
    else:
        if len(text_or_bytes) > MAX_SUITE_BYTES:  # characters, not bytes: close enough here
            raise _too_big(len(text_or_bytes), source)
        text = text_or_bytes[1:] if text_or_bytes.startswith("\ufeff") else text_or_bytes
        _check_characters(text, source)
    return _parse_text(text, source, require_mapping=require_mapping)


# -- step 1: bytes -> text -----------------------------------------------------------------------
def _too_big(size: int, source: str) -> UserInputError:
    return UserInputError(
        f"file too large ({size / 2**20:.1f} MiB; a suite file may be at most "
        f"{MAX_SUITE_BYTES // 2**20} MiB, MAX_SUITE_BYTES)",
        source=source,
    )


def _decode(data: bytes, source: str) -> str:
    """UTF-8, or UTF-16/32 when a BOM says so; a bad byte is reported by line and column."""
    encoding, label, start = "utf-8", "UTF-8", 0
    for bom, enc, name in _BOMS:
        if data.startswith(bom):
            encoding, label, start = enc, name, (len(bom) if enc == "utf-8-sig" else 0)
            break
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        if label != "UTF-8":
            where = f"at byte offset {exc.start}"
        else:  # everything before the bad byte decoded, so it can be counted in characters
            line, column = _line_col(data[start : exc.start].decode("utf-8"))
            where = f"at line {line}, column {column}"
        raise UserInputError(
            f"not valid {label} {where} (byte 0x{data[exc.start]:02x}): save the file as UTF-8",
            source=source,
        ) from None
    _check_characters(text, source)
    return text


def _check_characters(text: str, source: str) -> None:
    """No control characters (nor lone surrogates, which a ``str`` from memory may hold)."""
    bad = _FORBIDDEN.search(text)
    if bad:
        line, column = _line_col(text[: bad.start()])
        char = ord(bad.group())
        name = " (NUL)" if char == 0 else ""
        raise UserInputError(
            f"control character U+{char:04X}{name} at line {line}, column {column} is not allowed"
            " in a suite file (is this a binary file? save it as UTF-8 text)",
            source=source,
        )


def _line_col(prefix: str) -> tuple[int, int]:
    """1-based line and column of the character just after ``prefix`` (CRLF, CR or LF)."""
    line = prefix.count("\n") + prefix.count("\r") - prefix.count("\r\n") + 1
    line_start = max(prefix.rfind("\n"), prefix.rfind("\r")) + 1
    return line, len(prefix) - line_start + 1


# -- step 2: events ------------------------------------------------------------------------------
_KEY = object()  # path step of a mapping key itself: reported at the mapping's path
_COMPLEX = "?"  # label of a non-scalar key in a path


def _parse_text(text: str, source: str, *, require_mapping: bool) -> Any:
    if not text.strip():  # tabs too, which the scanner would call an invalid token
        if require_mapping:
            raise UserInputError(EMPTY_MESSAGE, source=source)
        return None
    _check_events(text, source)
    loader = _LOADER(text)
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as exc:  # an undefined or duplicate anchor
        raise _syntax_error(exc, text, source) from None
    finally:
        loader.dispose()
    return _Builder(source).document(root, require_mapping=require_mapping)


def _check_events(text: str, source: str) -> None:
    """Stream the parser's events and stop at the first limit passed (depth, count, several
    documents), before any node is composed. A frame per open collection remembers how it was
    reached, so a path is rebuilt only when an error needs it."""
    loader = _LOADER(text)
    # frame: [is_mapping, step from its parent, next index | expecting a key, last key]
    stack: list[list[Any]] = []
    events = documents = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            events += 1
            cls = type(event)
            if cls in _NODE_EVENTS:
                step = _next_step(stack, event)
                if cls is SequenceStartEvent or cls is MappingStartEvent:
                    is_mapping = cls is MappingStartEvent
                    stack.append([is_mapping, step, True if is_mapping else 0, None])
                    if len(stack) > MAX_DEPTH:
                        raise _limit("depth", _steps(stack), event.start_mark, source)
                elif events > MAX_EVENTS:  # at this value, or at this key
                    where = stack[-1][3] if step is _KEY else step
                    raise _limit("events", [*_steps(stack), where], event.start_mark, source)
            elif cls is SequenceEndEvent or cls is MappingEndEvent:
                if events > MAX_EVENTS:  # at the collection being closed
                    raise _limit("events", _steps(stack), event.start_mark, source)
                stack.pop()
            elif cls is DocumentStartEvent:
                documents += 1
                if documents > 1:
                    mark = event.start_mark
                    raise UserInputError(
                        "several YAML documents in one file (a suite is one document: remove"
                        " the '---' line and what follows, or split the file)",
                        source=source,
                        field=f"line {mark.line + 1}, column {mark.column + 1}",
                    )
            if events > MAX_EVENTS:
                raise _limit("events", _steps(stack), event.start_mark, source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        if mark is not None and "maximum nesting depth" in str(getattr(exc, "problem", "")):
            # libyaml's own limit (1,000), met while it scans ahead of the events that would
            # have stopped at ours: report ours, at the value that was coming next.
            raise _limit("depth", [*_steps(stack), _pending_step(stack)], mark, source) from None
        raise _syntax_error(exc, text, source) from None
    finally:
        loader.dispose()


_NODE_EVENTS = frozenset({ScalarEvent, AliasEvent, SequenceStartEvent, MappingStartEvent})


def _next_step(stack: list[list[Any]], event: Any) -> Any:
    """Where a node event sits in the innermost open collection; advances that collection."""
    if not stack:
        return None
    top = stack[-1]
    if not top[0]:
        top[2] += 1
        return top[2] - 1
    if top[2]:  # a key: remembered for the value that follows
        top[2] = False
        top[3] = event.value if type(event) is ScalarEvent else _COMPLEX
        return _KEY
    top[2] = True
    return top[3]


def _pending_step(stack: list[list[Any]]) -> Any:
    """Where the next node event would sit, without advancing anything."""
    if not stack:
        return None
    top = stack[-1]
    return top[2] if not top[0] else (_KEY if top[2] else top[3])


def _steps(stack: list[list[Any]]) -> list[Any]:
    return [frame[1] for frame in stack]


def _limit(which: str, steps: list[Any], mark: Any, source: str) -> UserInputError:
    line = f" by line {mark.line + 1}" if mark is not None else ""
    if which == "depth":
        message = f"nested more than {MAX_DEPTH} levels deep{line} (MAX_DEPTH)"
    else:
        message = (
            f"more than {MAX_EVENTS:,} YAML values{line} (MAX_EVENTS; a suite has a few hundred)"
        )
    return UserInputError(message, source=source, field=_render_path(steps) or None)


def _syntax_error(exc: yaml.YAMLError, text: str, source: str) -> UserInputError:
    """``not valid YAML: <problem>`` at ``line L, column C``, the parser's words cut short."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    field = None
    if mark is not None:
        field = f"line {mark.line + 1}, column {mark.column + 1}"
    elif isinstance(exc, yaml.reader.ReaderError):
        line, column = _line_col(text[: exc.position])
        field = f"line {line}, column {column}"
    problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc)
    message = f"not valid YAML: {_clip(problem, _MAX_PROBLEM)}"
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark is not None and context_mark is not mark:
        message += (
            f" ({_clip(context, _MAX_PROBLEM)} at line {context_mark.line + 1},"
            f" column {context_mark.column + 1})"
        )
    return UserInputError(message, source=source, field=field)


# -- step 3: nodes -> data -----------------------------------------------------------------------
class _Builder:
    """Turns one composed document into plain data, tracking the field path for errors.

    Recursion is safe: the event pass bounded the depth, and a node seen before (an alias) is
    never descended again. An alias yields the very object its anchor built, as ``safe_load``
    does, and adds the anchor's expanded size to a running count."""

    def __init__(self, source: str):
        self.source = source
        self.steps: list[Any] = []  # path of the node being built: str keys and int indices
        self.built: dict[int, tuple[Any, int]] = {}  # id(collection node) -> (value, size)
        self.active: set[int] = set()  # collections being built: reaching one again is a cycle
        self.expanded = 0  # nodes added by aliases

    def document(self, root: Node | None, *, require_mapping: bool) -> Any:
        if root is None or (
            isinstance(root, ScalarNode) and root.tag == _YAML + "null" and root.value == ""
        ):
            if require_mapping:
                raise UserInputError(EMPTY_MESSAGE, source=self.source)
            return None
        if require_mapping and not isinstance(root, MappingNode):
            self._check_tag(root)
            raise UserInputError(
                f"a suite must be a YAML mapping with at least 'name', not {self._kind(root)}",
                source=self.source,
            )
        return self.build(root)[0]

    def error(self, message: str, steps: list[Any] | None = None) -> UserInputError:
        path = _render_path(self.steps if steps is None else steps)
        return UserInputError(message, source=self.source, field=path or None)

    def build(self, node: Node) -> tuple[Any, int]:
        """``(value, expanded size in nodes)`` of ``node``."""
        if isinstance(node, ScalarNode):
            return self.scalar(node), 1
        key = id(node)
        if key in self.built:
            value, size = self.built[key]
            self.expanded += size
            if self.expanded > MAX_EXPANDED_NODES:
                raise self.error(
                    f"aliases here expand the file by more than {MAX_EXPANDED_NODES:,} values"
                    " (MAX_EXPANDED_NODES): reuse small values with anchors, not whole trees"
                )
            return value, size
        if key in self.active:
            raise self.error("recursive alias: a value contains itself (an anchor used inside it)")
        self._check_tag(node)
        self.active.add(key)
        value, size = self.mapping(node) if isinstance(node, MappingNode) else self.sequence(node)
        self.active.discard(key)
        self.built[key] = (value, size)
        return value, size

    def sequence(self, node: SequenceNode) -> tuple[list[Any], int]:
        items, size = [], 1
        self.steps.append(0)
        for index, child in enumerate(node.value):
            self.steps[-1] = index
            value, child_size = self.build(child)
            items.append(value)
            size += child_size
        self.steps.pop()
        return items, size

    def mapping(self, node: MappingNode) -> tuple[dict[str, Any], int]:
        result: dict[str, Any] = {}
        lines: dict[str, int] = {}
        merged: dict[str, Any] = {}
        merge_line = 0
        size = 1
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if isinstance(key_node, ScalarNode) and key_node.tag == _MERGE:
                if merge_line:
                    raise self.error(
                        f"duplicate key on line {line} (also on line {merge_line})",
                        [*self.steps, "<<"],
                    )
                merge_line = line
                merged, merged_size = self.merge(value_node)
                size += 1 + merged_size
                continue
            key = self.key(key_node)
            if key in lines:
                raise self.error(
                    f"duplicate key on line {line} (also on line {lines[key]})",
                    [*self.steps, key],
                )
            lines[key] = line
            self.steps.append(key)
            value, value_size = self.build(value_node)
            self.steps.pop()
            result[key] = value
            size += 1 + value_size
        if merged:  # explicit keys win over merged ones; merged keys come first, as in PyYAML
            result = {**merged, **result}
        return result, size

    def merge(self, node: Node) -> tuple[dict[str, Any], int]:
        """What a ``<<`` key merges: ``<<: *a``, or ``<<: [*a, *b]`` where a key in an earlier
        mapping wins (the YAML merge-key spec; PyYAML 6.0.4 lets the later one win or not
        depending on string identity, so the spec is the only stable rule)."""
        self.steps.append("<<")
        sources = node.value if isinstance(node, SequenceNode) else [node]
        if not all(isinstance(n, MappingNode) for n in sources):
            raise self.error("a merge key '<<' takes a mapping or a list of mappings (aliases)")
        merged: dict[str, Any] = {}
        size = 0
        for source in sources:
            value, source_size = self.build(source)
            size += source_size
            for key, item in value.items():
                merged.setdefault(key, item)
        self.steps.pop()
        return merged, size

    def key(self, node: Node) -> str:
        if not isinstance(node, ScalarNode):
            kind = "a list" if isinstance(node, SequenceNode) else "a mapping"
            raise self.error(f"a key must be a string, not {kind}")
        if node.tag == _STR or node.tag == _YAML + "value":  # SafeLoader reads a '=' key as str
            return node.value
        value = self.scalar(node)
        raise self.error(
            f"key {short_repr(value)} is not a string (YAML reads it as"
            f" {_SCALAR_KINDS[node.tag]}; put it in quotes if it is a name)"
        )

    def scalar(self, node: ScalarNode) -> Any:
        self._check_tag(node)
        try:
            return _SCALAR_CONSTRUCTORS[node.tag](node)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            what = _SCALAR_KINDS[node.tag]
            if node.tag == _YAML + "int" and len(node.value) > 4000:
                detail = "too many digits"
            else:
                detail = _clip(str(exc), 120) if node.tag == _YAML + "timestamp" else ""
            raise self.error(
                f"{short_repr(node.value)} cannot be read as {what}"
                + (f" ({detail})" if detail else "")
                + "; put it in quotes to keep it a string"
            ) from None

    def _check_tag(self, node: Node) -> None:
        allowed = (
            node.tag in _SCALAR_CONSTRUCTORS
            if isinstance(node, ScalarNode)
            else node.tag == (_MAP if isinstance(node, MappingNode) else _SEQ)
        )
        if allowed:
            return
        if node.tag == _MERGE:
            raise self.error("'<<' is YAML's merge key: put it in quotes to use it as a string")
        tag = "!!" + node.tag[len(_YAML) :] if node.tag.startswith(_YAML) else node.tag
        raise self.error(f"YAML tag {short_repr(tag)} is not allowed (suites are plain data)")

    def _kind(self, node: Node) -> str:
        if isinstance(node, SequenceNode):
            return "a list"
        if isinstance(node, MappingNode):
            return "a mapping"
        value = self.scalar(node)
        return "null" if value is None else f"{_SCALAR_KINDS[node.tag]} ({short_repr(value)})"


def _render_path(steps: list[Any]) -> str:
    """``train.lr``, ``grid.activation[0]``; long keys and long paths are cut."""
    out = ""
    for step in steps:
        if step is None or step is _KEY:
            continue
        if isinstance(step, int):
            out += f"[{step}]"
            continue
        label = step if len(step) <= 60 and step.isprintable() else short_repr(step, 40)
        out = f"{out}.{label}" if out else label
    return out if len(out) <= _MAX_PATH else out[: _MAX_PATH // 2] + "..." + out[-_MAX_PATH // 2 :]


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
