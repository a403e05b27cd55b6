"""Click options the commands share."""

from __future__ import annotations

from typing import Any

import click


class Renamed(click.Option):
    """An option whose --help shows its first `shown` spellings only: the
    others are old names that still work, so that one name means one thing
    on every command (--output: a directory written to; --run-id: a run)."""

    def __init__(self, *args: Any, shown: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shown = shown

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        every = self.opts
        self.opts = every[:self.shown]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = every
