"""One self-contained HTML page: headings, tables, paragraphs and PNG figures embedded as
base64 data URIs, written with the same PNGs beside it.

Every text that reaches the page goes through :func:`html.escape` here, in one place:
results hold user paths, CSV column names and free-form notes, and none of them may inject
markup. Callers pass plain text; only this module writes tags.
"""
from __future__ import annotations

import base64
import html
import json
import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["Page", "fmt", "fmt_ci", "fmt_setting"]

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; }
figcaption { font-size: 0.9em; color: #555; }
p.absent { color: #666; font-style: italic; }
p.alarm { color: #fff; background: #b00020; padding: 0.5em 0.8em; font-weight: bold; }
"""


def fmt(value: Any, spec: str = ".4f") -> str:
    """A value as table text: floats by ``spec`` (NaN: "n/a", infinities spelled out), ints
    with thousands separators, None: "-", booleans "yes"/"no", anything else ``str``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return format(value, spec)
    return str(value)


def fmt_ci(value: Any, ci: tuple[float, float] | None, spec: str = ".3f") -> str:
    """"value [lo, hi]" (the 95% interval when there is one)."""
    text = fmt(value, spec)
    return text if ci is None else f"{text} [{format(ci[0], spec)}, {format(ci[1], spec)}]"


def fmt_setting(value: Any) -> str:
    """A config value as the user would write it: no thousands separators, lists and tables as
    JSON, "" spelled out."""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if value == "":
        return "(empty)"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return fmt(value, "g")


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _is_number(text: str) -> bool:
    head = text.split(" ", 1)[0].replace(",", "").rstrip("%")
    try:
        float(head)
    except ValueError:
        return False
    return True


class Page:
    """An HTML page under construction; :meth:`write` puts it and its PNGs on disk."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._parts: list[str] = [f"<h1>{_esc(title)}</h1>"]
        self._images: dict[str, bytes] = {}

    def heading(self, text: str) -> None:
        self._parts.append(f"<h2>{_esc(text)}</h2>")

    def paragraph(self, text: str, *, alarm: bool = False) -> None:
        cls = ' class="alarm"' if alarm else ""
        self._parts.append(f"<p{cls}>{_esc(text)}</p>")

    def absent(self, text: str) -> None:
        """A section that was not run: one sentence saying so, in place of its content."""
        self._parts.append(f'<p class="absent">{_esc(text)}</p>')

    def bullets(self, items: Iterable[str]) -> None:
        lines = "".join(f"<li>{_esc(item)}</li>" for item in items)
        self._parts.append(f"<ul>{lines}</ul>")

    def table(self, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
        """A table of text cells; cells that read as numbers are right-aligned."""
        head = "".join(f"<th>{_esc(h)}</th>" for h in header)
        body = []
        for row in rows:
            cells = "".join(
                f'<td class="num">{_esc(c)}</td>' if i and _is_number(str(c))
                else f"<td>{_esc(c)}</td>" for i, c in enumerate(row))
            body.append(f"<tr>{cells}</tr>")
        self._parts.append(f"<table><thead><tr>{head}</tr></thead>"
                           f"<tbody>{''.join(body)}</tbody></table>")

    def pairs(self, header: tuple[str, str], items: Sequence[tuple[str, str]],
              columns: int = 3) -> None:
        """(name, value) pairs as a table of ``columns`` pairs side by side, filled row by row:
        a long list of settings in a third of the height."""
        rows = [[c for pair in items[i:i + columns] for c in pair]
                for i in range(0, len(items), columns)]
        width = 2 * min(columns, len(items))
        self.table(list(header) * (width // 2), [r + [""] * (width - len(r)) for r in rows])

    def figure(self, name: str, png: bytes, caption: str) -> None:
        """A PNG, embedded in the page and written as ``report/<name>``."""
        if name in self._images:
            raise ValueError(f"figure name {name!r} used twice on one page")
        self._images[name] = png
        data = base64.b64encode(png).decode("ascii")
        self._parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{_esc(caption)}" '
            f'data-file="report/{_esc(name)}"><figcaption>{_esc(caption)}</figcaption></figure>')

    def html(self) -> str:
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{_esc(self.title)}</title><style>{_STYLE}</style></head>"
                "<body>\n" + "\n".join(self._parts) + "\n</body></html>\n")

    def write(self, out_dir: str, owned: Iterable[str] = ()) -> str:
        """Write ``out_dir/report.html`` and each figure as ``out_dir/report/<name>``; remove
        the files named in ``owned`` that this page does not hold (a previous report's plot of
        a section absent now would otherwise pass for this run's). Returns the HTML path."""
        figures = os.path.join(out_dir, "report")
        os.makedirs(figures, exist_ok=True)
        for name, png in self._images.items():
            _write_atomic(os.path.join(figures, name), png)
        for name in set(owned) - set(self._images):
            path = os.path.join(figures, name)
            if os.path.exists(path):
                os.remove(path)
        path = os.path.join(out_dir, "report.html")
        _write_atomic(path, self.html().encode("utf-8"))
        return path


def _write_atomic(path: str, data: bytes) -> None:
    # A reader (a browser refreshing the page) never sees half a file.
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
