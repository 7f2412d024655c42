"""One error type for bad user input, so the CLI can print it plainly and exit 2.

Everything a user can get wrong (a suite file, a factor level, a dataset option, a data directory)
is reported as ``file: field.path: message``; nothing is run or written before it is raised.
"""

from __future__ import annotations

EXIT_USAGE = 2


class UserInputError(Exception):
    """Bad input from the user: a message that names the file, the field and what is allowed."""

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None):
        self.message = message
        self.source = source
        self.field = field
        super().__init__(self.render())

    def render(self) -> str:
        parts = [p for p in (self.source, self.field) if p]
        return ": ".join([*parts, self.message])

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
