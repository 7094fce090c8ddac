"""The report writer: a Markdown report, its JSON and its PNG figures.

Every experiment (deepprl.experiments) and the A/B study (deepprl.abtest) writes
`reports/<experiment>/<dataset>.md`, `<dataset>.json` and `<dataset>-<figure>.png`; the
first line of the Markdown is the command that made it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # reports are written to files, never shown

from matplotlib.figure import Figure

from deepprl.io import json_safe
from deepprl.provenance import code_version


@dataclass
class Report:
    """A report under construction: Markdown blocks, JSON data and figures."""

    experiment: str
    dataset: str
    title: str
    command: str
    blocks: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Figure] = field(default_factory=dict)

    def add(self, *blocks: str) -> None:
        self.blocks.extend(blocks)

    def figure(self, name: str, fig: Figure, caption: str) -> None:
        """Attach a figure; the Markdown shows it inline where this is called."""
        self.figures[name] = fig
        self.blocks.append(f"![{caption}]({self.dataset}-{name}.png)\n\n*{caption}*")

    def write(self, out: Path) -> Path:
        """Write the report under out/<experiment>/; return the Markdown's path."""
        folder = out / self.experiment
        folder.mkdir(parents=True, exist_ok=True)
        header = [f"# {self.title}", f"Made by: `{self.command}`", f"Code: {code_version()}"]
        text = "\n\n".join([*header, *self.blocks]) + "\n"
        md = folder / f"{self.dataset}.md"
        md.write_text(text, encoding="utf-8")
        payload = {"experiment": self.experiment, "dataset": self.dataset,
                   "command": self.command, "code": code_version(), **self.data}
        (folder / f"{self.dataset}.json").write_text(
            json.dumps(json_safe(payload), indent=1, sort_keys=False) + "\n", encoding="utf-8")
        for name, fig in self.figures.items():
            fig.savefig(folder / f"{self.dataset}-{name}.png", dpi=110, bbox_inches="tight")
        return md


def md_table(headers: list[str], rows: list[list[Any]], *, digits: int = 4) -> str:
    """A Markdown table; floats are rounded to `digits`."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "—" if not math.isfinite(value) else f"{value:.{digits}f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
