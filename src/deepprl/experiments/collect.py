"""`deepprl report`: every experiment's reports gathered into reports/README.md."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)/]+\.png)\)")


def collect(reports: Path) -> Path:
    """Write reports/README.md: a contents list, then each report (its images re-pointed
    into their experiment folder, its title demoted one level)."""
    from deepprl.experiments import EXPERIMENTS

    if not reports.is_dir():
        raise ValueError(f"no reports under {reports}: run `deepprl experiment NAME` first")
    known = list(EXPERIMENTS)
    folders = sorted((p for p in reports.iterdir() if p.is_dir() and any(p.glob("*.md"))),
                     key=lambda p: (known.index(p.name) if p.name in known else len(known),
                                    p.name))
    if not folders:
        raise ValueError(f"no reports under {reports}: run `deepprl experiment NAME` first")
    contents, sections = [], []
    for folder in folders:
        description = EXPERIMENTS[folder.name].description if folder.name in EXPERIMENTS \
            else folder.name
        contents.append(f"- **{folder.name}** — {description}: " + ", ".join(
            f"[{md.stem}]({folder.name}/{md.name})" for md in sorted(folder.glob("*.md"))))
        for md in sorted(folder.glob("*.md")):
            text = md.read_text(encoding="utf-8")
            text = _IMAGE.sub(rf"![\1]({folder.name}/\2)", text)
            text = re.sub(r"^(#+) ", lambda m: "#" + m[1] + " ", text, flags=re.MULTILINE)
            sections.append(text.strip())
    body = ["# Reports", "Every report below was made by the command at its top "
            "(`deepprl experiment NAME --dataset D`); this page by `deepprl report`.",
            *summary(reports), "\n".join(contents), *sections]
    path = reports / "README.md"
    path.write_text("\n\n".join(body) + "\n", encoding="utf-8")
    return path


def summary(reports: Path) -> list[str]:
    """The opening table: per Table 4 report (dataset and objective set), DeepPRL against
    the best other method on every column, with the paired test over runs and what
    `deepprl diagnose` says of per-user weights there; [] without Table 4 reports."""
    from deepprl.report import md_table

    rows = []
    for path in sorted((reports / "table4").glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        verdicts = data.get("diagnose") or []
        pays = "—" if not verdicts else f"{sum(v['pays'] for v in verdicts)}/{len(verdicts)}"
        for column, test in data["tests"].items():
            ours, rival = data["means"]["deepprl"][column], data["means"][test["rival"]][column]
            rows.append([f"[{path.stem}](table4/{path.stem}.md)", ", ".join(data["objectives"]),
                         column, ours, f"`{test['rival']}` {rival:.4f}",
                         f"{test['improvement_pct']:+.2f}%", _reading(test), data["seeds"],
                         pays, str(data.get("code", "")).split(", ")[-1]])
    if not rows:
        return []
    return ["## DeepPRL against the best other method (Table 4)", md_table(
        ["report", "objectives", "column", "DeepPRL", "best other", "change", "paired test "
         "over runs", "runs", "diagnose: weights pay (runs)", "code"], rows),
        "Change: DeepPRL's mean relative to the best other method's on that column; the "
        "test: two-sided paired t-test over the runs (seeds), significant at p < 0.05."]


def _reading(test: dict[str, Any]) -> str:
    p = test["p_runs"]
    if p is None or not math.isfinite(p):
        return "no test (runs identical or one run)"
    side = "gain" if test["improvement_pct"] > 0 else "loss"
    return f"{side}, p = {p:.3g}" + (" (significant)" if p < 0.05 else " (not significant)")
