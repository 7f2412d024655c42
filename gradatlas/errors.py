"""One error type for bad user input, so the CLI can print it plainly and exit 2.

Everything a user can get wrong (a suite file, a factor level, a dataset option, a data directory)
is reported as ``file: field.path: message``; nothing is run or written before it is raised.
"""

from __future__ import annotations

EXIT_USAGE = 2
MAX_REPR = 80  # characters of a user's value quoted back in a message
MAX_MESSAGE = 2000  # a message longer than this is cut: never print an unbounded value


def field_key(key: object) -> str:
    """A mapping key as it may appear in a field path: as written when printable, else quoted
    with escapes, so a key holding a newline or an escape sequence cannot split or recolour an
    error line."""
    text = str(key)
    if text and text.isprintable() and len(text) <= MAX_REPR:
        return text
    return short_repr(text)


def short_repr(value: object, limit: int = MAX_REPR) -> str:
    """``repr(value)`` cut to ``limit`` characters, so an error can quote any input (a 50 MB
    string, an alias bomb's expansion) without printing it whole. Containers are summarized
    before ``repr`` is called, so the cost is bounded too."""
    if isinstance(value, list | tuple | set | frozenset | dict):
        if len(value) > 8:
            return f"<{type(value).__name__} of {len(value)} items>"
        try:
            text = repr(value)
        except RecursionError:
            return f"<recursive {type(value).__name__}>"
    elif isinstance(value, str | bytes) and len(value) > limit:
        text = repr(value[:limit])
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class UserInputError(Exception):
    """Bad input from the user: a message that names the file, the field and what is allowed."""

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None):
        self.message = message
        self.source = source
        self.field = field
        super().__init__(self.render())

    def render(self) -> str:
        parts = [p for p in (self.source, self.field) if p]
        text = ": ".join([*parts, self.message])
        return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."

    def located(self, source: str | None = None, prefix: str | None = None) -> UserInputError:
        """The same error, placed in a file and/or under a parent field path."""
        field = self.field
        if prefix:
            field = (
                f"{prefix}.{field}"
                if field and not field.startswith("[")
                else (f"{prefix}{field}" if field else prefix)
            )
        return UserInputError(self.message, source=source or self.source, field=field)


class SuiteErrors(UserInputError):
    """Several validation problems found in one pass, reported together."""

    def __init__(self, errors: list[UserInputError]):
        self.errors = errors
        super().__init__("\n".join(e.render() for e in errors))

    def render(self) -> str:  # type: ignore[override]
        return "\n".join(e.render() for e in getattr(self, "errors", []))
