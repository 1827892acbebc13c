"""How results reach people (rich tables, progress on stderr) and machines (`--output json`)."""

from __future__ import annotations

import json
import sys
import time
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.table import Table

from .health import Check

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)

STATUS_STYLE = {"pass": "[green]pass[/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]"}


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


def progress(message: str) -> None:
    """Live progress for people and hook logs: one timestamped line on stderr."""
    stderr.print(f"[dim]{_clock()}[/] {message}", markup=True)


def _clock() -> str:
    return time.strftime("%H:%M:%S")


def emit_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False) + "\n")


def checks_table(checks: list[Check], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("check")
    table.add_column("verdict")
    table.add_column("evidence", overflow="fold")
    for check in checks:
        table.add_row(check.name, STATUS_STYLE[check.status], check.detail)
    return table


def rows_table(rows: list[dict[str, str]], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in rows[0] if rows else []:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    return table
