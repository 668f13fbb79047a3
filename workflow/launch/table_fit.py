"""Tables that fit the terminal: every cell on one line, never broken mid-word. Columns of short
words (states, job ids, figures) keep their width; a point name is elided in the middle (its end
holds the varying value); a free text (an error) is cut at a word boundary; when even that does
not fit, the columns of least value go first."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

ELLIPSIS = "…"
NAME_BREAKS = ".,[ _"  # an elided name starts after one of these, so its first word is whole


def elide_name(name: str, width: int) -> str:
    """``name`` in ``width`` cells: the head up to its first ``[`` (a job's name), an ellipsis,
    and as much of the end as fits, starting at a word (`mymax[…gpus_per_node=1]`)."""
    if cell_len(name) <= width:
        return name
    head = name[:name.index("[") + 1] if "[" in name else ""
    if cell_len(head) > width // 3:
        head = ""
    tail = _last_cells(name, width - 1 - cell_len(head))
    starts_a_word = name[-len(tail) - 1] in NAME_BREAKS
    start = 0 if starts_a_word else next(
        (i + 1 for i, c in enumerate(tail[:-1]) if c in NAME_BREAKS and "=" in tail[i + 1:]), 0)
    return f"{head}{ELLIPSIS}{tail[start:]}"


def wrap_settings(name: str, width: int) -> str:
    """``name`` on as many lines of ``width`` cells as it needs, broken after a comma only, so
    every setting stays whole (a setting longer than the line is elided in the middle)."""
    lines: list[str] = []
    for part in name.split(","):
        if lines and cell_len(lines[-1]) + 1 + cell_len(part) <= width:
            lines[-1] += "," + part
            continue
        if lines:
            lines[-1] += ","
        lines.append(part)
    return "\n".join(line if cell_len(line) <= width else elide_name(line, width) for line in lines)


def name_eliders(names: list[str]) -> Callable[[str, int], str]:
    """What elides the names of one table: when they all end in the same setting (`…,
    train_batch_size=16]`), each keeps the part that differs (`…learning_rate=3e-4,…`); else
    each keeps its end (elide_name)."""
    distinct = sorted(set(names))
    if len(distinct) < 2:
        return elide_name
    prefix, suffix = len(os.path.commonprefix(distinct)), len(os.path.commonprefix([n[::-1] for n in distinct]))

    def elide(name: str, width: int) -> str:
        if cell_len(name) <= width or len(name) - suffix <= 0 or "=" not in name[len(name) - suffix:]:
            return elide_name(name, width)
        start = max((name.rfind(c, 0, min(prefix, len(name) - suffix)) for c in NAME_BREAKS), default=-1) + 1
        return _window(name, start, width)
    return elide


def _window(name: str, start: int, width: int) -> str:
    """``name`` from ``start`` in ``width`` cells, an ellipsis where a side is cut; from its end
    (elide_name) when the rest from ``start`` would fit anyway."""
    left = ELLIPSIS if start else ""
    rest = name[start:]
    if cell_len(left + rest) <= width:
        return elide_name(name, width)
    shown = _first_cells(rest, width - 1 - cell_len(left))
    return left + shown + ELLIPSIS


def shorten_text(text: str, width: int) -> str:
    """``text`` on one line in ``width`` cells, cut at the last word that fits, with an ellipsis."""
    text = " ".join(text.split())
    if cell_len(text) <= width:
        return text
    cut = _first_cells(text, width - 1)
    if text[len(cut)] != " " and " " in cut:  # the last word is cut: leave it out
        cut = cut[:cut.rindex(" ")]
    return cut.rstrip(" ,;:") + ELLIPSIS


def _last_cells(text: str, cells: int) -> str:
    while cell_len(text) > cells:
        text = text[1:]
    return text


def _first_cells(text: str, cells: int) -> str:
    while cell_len(text) > cells:
        text = text[:-1]
    return text


@dataclass
class Column:
    """One column: its header and its cells (plain text), with a style per cell if any.
    ``drop``: 0 is kept always, higher goes first when the table does not fit. ``shorten``: the
    column takes what width is left (at least ``min_width``) and shortens its cells to it."""
    header: str
    cells: list[str]
    styles: list[str] | None = None
    justify: str = "left"
    drop: int = 0
    shorten: Callable[[str, int], str] | None = None
    min_width: int = 12
    width: int = field(init=False, default=0)

    @property
    def natural(self) -> int:
        return max(cell_len(c) for c in [self.header, *self.cells])

    @property
    def least(self) -> int:
        return min(self.natural, max(self.min_width, cell_len(self.header))) if self.shorten else self.natural


def table_width(widths: list[int]) -> int:
    """What a rich Table of the default box takes for columns of these widths: each column has
    a cell of padding either side and a border, and the table one border more."""
    return sum(widths) + 3 * len(widths) + 1


def fitted_table(columns: list[Column], width: int, title: str | None = None) -> Table:
    """A Table of ``columns`` no wider than ``width``: the droppable ones that do not fit left
    out, the shortening ones given the room that is left, in their order."""
    kept = list(columns)
    while table_width([c.least for c in kept]) > width and any(c.drop for c in kept):
        worst = max(c.drop for c in kept)
        kept.remove([c for c in kept if c.drop == worst][-1])
    for column in kept:
        column.width = column.least
    _share(width - table_width([c.least for c in kept]), [c for c in kept if c.shorten])
    table = Table(title=title)
    for column in kept:
        table.add_column(column.header, justify=column.justify, width=column.width, no_wrap=True,
                         overflow="ellipsis")
    for index in range(len(columns[0].cells) if columns else 0):
        table.add_row(*(_cell(column, index) for column in kept))
    return table


def _share(spare: int, columns: list[Column]) -> None:
    """The spare width, a cell at a time to each column that can still use one."""
    while spare > 0 and (wanting := [c for c in columns if c.width < c.natural]):
        for column in wanting[:spare]:
            column.width += 1
            spare -= 1


def _cell(column: Column, index: int) -> Text:
    text = column.cells[index]
    if column.shorten:
        text = column.shorten(text, column.width)
    return Text(text, style=column.styles[index] if column.styles else "")
