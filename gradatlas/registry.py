"""Named registries of small builder functions, in the spirit of timm's model registry.

Configs and the command line speak in registered names, never import paths. Validation errors,
"did you mean" suggestions and ``gradatlas ls`` all read the same registry, so adding a factor is
one entry (plus one test) and the docs cannot drift from the code.

Builders may take keyword options (``{name: normal, std: 0.5}`` in a suite); those are checked
against the builder's signature before anything runs.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar, get_type_hints

from pydantic import TypeAdapter, ValidationError

from gradatlas.errors import UserInputError

F = TypeVar("F", bound=Callable[..., Any])


class Registry(Generic[F]):
    """A plain name -> builder mapping with discovery and option checking.

    ``fixed`` names the leading positional parameters every builder of this kind receives from
    the framework (e.g. the weight tensor for an init); everything after them is a user option.
    """

    def __init__(self, kind: str, fixed: int = 0):
        self.kind = kind
        self.fixed = fixed
        self._entries: dict[str, F] = {}

    # -- building the registry -------------------------------------------------------------
    def register(self, name: str | None = None) -> Callable[[F], F]:
        def add(fn: F) -> F:
            key = name or fn.__name__
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} registered twice")
            self._entries[key] = fn
            return fn

        return add

    # -- reading it ------------------------------------------------------------------------
    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self, pattern: str = "*") -> list[str]:
        return [n for n in self._entries if fnmatch.fnmatch(n, pattern)]

    def get(self, name: str) -> F:
        self.check_name(name)
        return self._entries[name]

    def doc(self, name: str) -> str:
        """First line of the builder's docstring: what ``gradatlas ls`` shows."""
        text = inspect.getdoc(self._entries[name]) or ""
        return text.splitlines()[0] if text else ""

    def options(self, name: str) -> dict[str, inspect.Parameter]:
        """The user-settable options of a builder (its keyword parameters after the fixed ones)."""
        params = list(inspect.signature(self._entries[name]).parameters.values())[self.fixed :]
        return {p.name: p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}

    # -- validation ------------------------------------------------------------------------
    def check_name(self, name: Any) -> None:
        if not isinstance(name, str):
            raise UserInputError(
                f"expected the name of a {self.kind} (a string), got {type(name).__name__} "
                f"{name!r} (known: {', '.join(self._entries)})"
            )
        if name not in self._entries:
            close = difflib.get_close_matches(name, list(self._entries), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UserInputError(
                f"unknown {self.kind} {name!r} ({hint}known: {', '.join(self._entries)})"
            )

    def check_options(self, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
        """Validate and coerce options against the builder's annotations; returns them resolved
        with defaults filled in, so the resolved config (and the trial id) is explicit."""
        self.check_name(name)
        fn = self._entries[name]
        accepted = self.options(name)
        hints = get_type_hints(fn)
        resolved: dict[str, Any] = {}
        for key, value in options.items():
            if key not in accepted:
                known = ", ".join(accepted) or "none"
                close = difflib.get_close_matches(key, list(accepted), n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise UserInputError(
                    f"unknown option {key!r} for {self.kind} {name!r} ({hint}options: {known})",
                    field=key,
                )
            annotation = hints.get(key, Any)
            try:
                resolved[key] = TypeAdapter(annotation).validate_python(value, strict=False)
            except ValidationError as exc:
                msg = exc.errors()[0]["msg"]
                raise UserInputError(
                    f"{msg} (got {value!r}; expected {_type_name(annotation)})", field=key
                ) from None
        for key, param in accepted.items():
            if key not in resolved:
                if param.default is inspect.Parameter.empty:
                    raise UserInputError(f"{self.kind} {name!r} needs option {key!r}", field=key)
                resolved[key] = param.default
        return resolved

    def build(self, name: str, *fixed_args: Any, **options: Any) -> Any:
        return self.get(name)(*fixed_args, **options)


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
