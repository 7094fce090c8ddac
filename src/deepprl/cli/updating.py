"""deepprl update: the weight policy trained further on the feedback a service stored."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from deepprl.cli.common import app, err, fail


@app.command()
def update(
    run: Annotated[Path, typer.Option(help="The served run directory (train or update).")],
    db: Annotated[Path, typer.Option(help="The service's feedback store (SQLite).")],
    out: Annotated[Path, typer.Option(help="New, empty directory for the new version.")],
    promote: Annotated[Path | None, typer.Option(
        help="Version pointer to make name the new version once it is written (what "
             "'deepprl serve --follow' watches); untouched when the update is refused.")
                       ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The record as JSON on stdout.")
                       ] = False,
) -> None:
    """Train the run's weight policy further on the feedback stored since the run; write a
    new version only where it beats the current policy on held-out feedback users (exit 1
    and nothing written otherwise)."""
    from deepprl.artifacts import SCHEMA_FILE, read_json
    from deepprl.rundir import check_complete
    from deepprl.serve.reload import write_pointer
    from deepprl.serve.service import model_version
    from deepprl.serve.store import FeedbackStore
    from deepprl.train.online_update import (
        Feedback,
        UpdateRefusedError,
        feedback_watermark,
        update_run,
    )

    try:
        check_complete(run)  # names what is wrong with --run before the store is opened
        if not db.is_file():
            fail(f"--db {db}: no such feedback store")
        watermark = feedback_watermark(run)
        store = FeedbackStore(db, fingerprint=str(read_json(run / SCHEMA_FILE)
                                                  ["data_fingerprint"]))
        try:
            events = [Feedback(id=s.id, user_id=s.event.user_id, item_id=s.event.item_id,
                               timestamp=s.event.timestamp, reward=s.event.reward)
                      for s in store.since(watermark)]
        finally:
            store.close()
        record = update_run(run, events, out, db=str(db.resolve()),
                            parent_version=model_version(run))
    except UpdateRefusedError as refused:
        if as_json:
            sys.stdout.write(json.dumps(refused.record) + "\n")
        err.print(Text.assemble(("refused:", "bold red"), " ", str(refused)),
                  highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from None
    except (ValueError, OSError, KeyError) as error:
        fail(str(error))
    if promote is not None:
        write_pointer(promote, out)
    check = record["check"]
    ref = check["versus_current"]
    err.print(f"new version {model_version(out)} in {out} ({check['served']} weights): "
              f"held-out reward {ref['learned']:.4f} vs {ref['static']:.4f} for the current "
              f"policy, gain {ref['gain']:+.4f} (lower bound {ref['gain_lower_bound']:+.4f}, "
              f"{int(ref['users'])} users)" + (f"; {promote} names it" if promote else ""),
              highlight=False, soft_wrap=True)
    if as_json:
        sys.stdout.write(json.dumps(record) + "\n")
