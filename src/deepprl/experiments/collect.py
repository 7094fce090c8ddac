"""`deepprl report`: every experiment's reports gathered into reports/README.md."""

from __future__ import annotations

import re
from pathlib import Path

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
            "\n".join(contents), *sections]
    path = reports / "README.md"
    path.write_text("\n\n".join(body) + "\n", encoding="utf-8")
    return path
