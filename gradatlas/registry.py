"""Named registries of small builder functions, in the spirit of timm's model registry.

Configs and the command line speak in registered names, never import paths. Validation errors,
"did you mean" suggestions and ``gradatlas ls`` all read the same registry, so adding an entry is
one registration (plus one test) and the docs cannot drift from the code.

Builders may take keyword options (``{name: normal, std: 0.5}`` in a suite); those are checked
against the builder's signature before anything runs, ranges included: an option annotated
``Annotated[float, Field(ge=0)]`` is range-checked by the same call. What an entry *is* (a
saturating activation, an optimizer's customary learning rate, a conv-only norm) is metadata on
the registration itself (``@REG.register(default_lr=0.1)``), never a side table.

Registration is import-light: annotations are evaluated per option, lazily, so a builder module
may keep torch out of its top level (``import torch`` inside the builder) and validation, which
only reads names, options and metadata, never imports torch.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from gradatlas.errors import UserInputError, field_key, short_repr

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Entry(Generic[F]):
    """One registration: the builder, its user options (in signature order) and its metadata."""

    name: str
    builder: F
    options: dict[str, inspect.Parameter]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def doc(self) -> str:
        text = inspect.getdoc(self.builder) or ""
        return text.splitlines()[0] if text else ""


class Registry(Generic[F]):
    """A plain name -> builder mapping with discovery, metadata and option checking.

    ``fixed`` names the leading positional parameters every builder of this kind receives from
    the framework (e.g. the weight tensor for an init); everything after them is a user option.
    ``required`` names the metadata every registration of this kind must give (what the rest of
    the project reads from it, e.g. a dataset's split sizes): a registration without one fails
    at import, not when the first plan needs it.
    """

    def __init__(self, kind: str, fixed: int = 0, required: tuple[str, ...] = ()):
        self.kind = kind
        self.fixed = fixed
        self.required = required
        self._entries: dict[str, Entry[F]] = {}
        self._adapters: dict[tuple[str, str], Any] = {}

    # -- building the registry -------------------------------------------------------------
    def register(self, name: str | None = None, **meta: Any) -> Callable[[F], F]:
        def add(fn: F) -> F:
            key = name or fn.__name__
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} registered twice")
            missing = [m for m in self.required if m not in meta]
            if missing:
                raise ValueError(
                    f"{self.kind} {key!r} registered without {', '.join(missing)} "
                    f"(every {self.kind} declares: {', '.join(self.required)})"
                )
            params = list(inspect.signature(fn).parameters.values())[self.fixed :]
            options = {
                p.name: p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            }
            self._entries[key] = Entry(key, fn, options, dict(meta))
            return fn

        return add

    # -- reading it ------------------------------------------------------------------------
    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self, pattern: str = "*") -> list[str]:
        return [n for n in self._entries if fnmatch.fnmatch(n, pattern)]

    def entry(self, name: str) -> Entry[F]:
        self.check_name(name)
        return self._entries[name]

    def get(self, name: str) -> F:
        return self.entry(name).builder

    def meta(self, name: str, key: str, default: Any = None) -> Any:
        """A registration's metadata value (``default`` when the entry does not set it)."""
        return self.entry(name).meta.get(key, default)

    def doc(self, name: str) -> str:
        """First line of the builder's docstring: what ``gradatlas ls`` shows."""
        return self.entry(name).doc

    def options(self, name: str) -> dict[str, inspect.Parameter]:
        """The user-settable options of a builder (its keyword parameters after the fixed ones)."""
        return self.entry(name).options

    def defaults(self, name: str) -> dict[str, Any]:
        """Options that have a default, with it."""
        return {k: p.default for k, p in self.options(name).items() if p.default is not p.empty}

    # -- validation ------------------------------------------------------------------------
    def check_name(self, name: Any) -> None:
        if not isinstance(name, str):
            raise UserInputError(
                f"expected the name of a {self.kind} (a string), got {type(name).__name__} "
                f"{short_repr(name)} (known: {', '.join(self._entries)})"
            )
        if name not in self._entries:
            close = difflib.get_close_matches(name, list(self._entries), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UserInputError(
                f"unknown {self.kind} {short_repr(name)} ({hint}known: {', '.join(self._entries)})"
            )

    def check_options(self, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
        """Validate and coerce options against the builder's annotations (types and ranges);
        returns them resolved, defaults filled in and in signature order, so the resolved config
        (and the trial id) is explicit and stable."""
        accepted = self.entry(name).options
        resolved: dict[str, Any] = {}
        for key, value in options.items():
            if key not in accepted:
                known = ", ".join(accepted) or "none"
                close = difflib.get_close_matches(str(key), list(accepted), n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise UserInputError(
                    f"unknown option {short_repr(key)} for {self.kind} {name!r} "
                    f"({hint}options: {known})",
                    field=field_key(key),
                )
            resolved[key] = self._check_value(name, key, value)
        for key, param in accepted.items():
            if key not in resolved:
                if param.default is inspect.Parameter.empty:
                    raise UserInputError(f"{self.kind} {name!r} needs option {key!r}", field=key)
                resolved[key] = param.default
        return {key: resolved[key] for key in accepted}

    def _check_value(self, name: str, key: str, value: Any) -> Any:
        from pydantic import ValidationError

        adapter, annotation = self._adapter(name, key)
        if isinstance(value, bool) and annotation is not bool:
            raise UserInputError(
                f"expected {_type_name(annotation)}, got {value!r} (a boolean is not a number)",
                field=key,
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise UserInputError(f"must be a finite number (got {value!r})", field=key)
        try:
            out = adapter.validate_python(value, strict=False)
        except ValidationError as exc:
            msg = exc.errors()[0]["msg"]
            raise UserInputError(
                f"{msg} (got {short_repr(value)}; expected {_type_name(annotation)})", field=key
            ) from None
        if isinstance(out, float) and not math.isfinite(out):
            raise UserInputError(f"must be a finite number (got {short_repr(value)})", field=key)
        return out

    def _adapter(self, name: str, key: str) -> tuple[Any, Any]:
        """A pydantic TypeAdapter for one option's annotation, built on first use: annotations
        are strings (``from __future__ import annotations``) evaluated in the builder's module,
        option by option, so a framework parameter typed ``Tensor`` never needs torch here."""
        cached = self._adapters.get((name, key))
        if cached is None:
            from pydantic import TypeAdapter

            entry = self._entries[name]
            annotation = entry.options[key].annotation
            if annotation is inspect.Parameter.empty:
                annotation = Any
            elif isinstance(annotation, str):
                annotation = eval(annotation, entry.builder.__globals__)
            cached = (TypeAdapter(annotation), annotation)
            self._adapters[(name, key)] = cached
        return cached

    def build(self, name: str, *fixed_args: Any, **options: Any) -> Any:
        return self.get(name)(*fixed_args, **options)


def _type_name(annotation: Any) -> str:
    metadata = getattr(annotation, "__metadata__", None)
    if metadata is not None:  # Annotated[float, Field(ge=0)] -> "float (ge=0)"
        base = _type_name(annotation.__origin__)
        bounds = [
            f"{k}={getattr(m, k)}"
            for m in metadata
            for k in ("gt", "ge", "lt", "le")
            if getattr(m, k, None) is not None
        ]
        for m in metadata:  # pydantic's Field() keeps its bounds in .metadata
            bounds += [
                f"{k}={getattr(c, k)}"
                for c in getattr(m, "metadata", [])
                for k in ("gt", "ge", "lt", "le")
                if getattr(c, k, None) is not None
            ]
        return f"{base} ({', '.join(bounds)})" if bounds else base
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
