"""deepprl diagnose: does per-user weighting pay on a run's log (deepprl.diagnose)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from deepprl.cli.common import app, fail


@app.command()
def diagnose(
    run: Annotated[Path, typer.Option(help="Run directory written by train.")],
    critic_steps: Annotated[int, typer.Option(
        help="DDPG runs: gradient steps of the refitted critic.")] = 500,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Does per-user weighting pay here? Held-out users' learned vs best static alpha,
    critic gradient spread (DDPG), vertex jumps, hindsight ceiling, alpha-invariant events,
    prediction error and collapse flags, and a verdict."""
    from deepprl.diagnose import diagnose_run

    try:
        result = diagnose_run(run, critic_steps=critic_steps)
    except ValueError as error:
        fail(str(error))
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    _print(result)


def _num(value: Any, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}" if isinstance(value, float) \
        else str(value)


def _print(result: dict[str, Any]) -> None:
    console = Console()
    h, c = result["held_out"], result["ceiling"]
    table = Table(title=Text(f"{result['run']}: {result['model']}, policy "
                             f"{result['algorithm']}, top-{result['k']}: held-out users' "
                             f"events ({c['events']})"))
    for column in ("", "reward", "note"):
        table.add_column(column)
    learned = "learned policy" if h["learned_policy"] else "the run's static alpha"
    mean = ", ".join(f"{w:.2f}" for w in h.get("learned_mean_weights", []))
    table.add_row(learned, _num(c["learned"]), f"mean alpha {mean}")
    weights = ", ".join(f"{w:.2f}" for w in h.get("static_weights", []))
    table.add_row("best static alpha (learning users)", _num(c["static"]), f"alpha {weights}")
    table.add_row("hindsight ceiling", _num(c["hindsight"]), "optimistic: alpha after outcome")
    table.add_row("rank by true reward", _num(c["upper_bound"]), "upper bound")
    console.print(table)
    lines = [f"paired by user ({_num(h.get('users'), 0)} users): gain {_num(h.get('gain'))}, "
             f"95% lower bound {_num(h.get('gain_lower_bound'))}, "
             f"p {_num(h.get('p_value'), 3)}; the run recorded: "
             f"{_recorded(h['recorded'])}, served {h['served']}"]
    lines += _critic_lines(result["critic"])
    lines.append(f"reward from each vertex inwards, alpha = (1 - t) e_k + t equal, t = "
                 f"{', '.join(f'{t:g}' for t in result['vertex_path']['t'])}:")
    for name, path in result["vertex_path"]["from_vertex"].items():
        rewards = ", ".join(_num(r) for r in path["reward"])
        lines.append(f"  {name}: {rewards}; vertex jump {_num(path['vertex_jump'])}")
    p = result["predictions"]
    lines.append(f"alpha-invariant top-K: {result['alpha_invariant']['share']:.0%} of events; "
                 f"prediction MAE {json.dumps(_rounded(p['test_mae']))} "
                 f"({p['mae_source']}); collapse flags: {_recorded(p['collapse_flags'])}")
    attention = p.get("mixture_attention")
    if attention is not None:
        shared = attention["shared_tower"]
        routed = (f"every objective reads the tower of {result['objectives'][shared]}"
                  if shared is not None else "no tower read by every objective")
        lines.append(f"mixture attention (row: objective, column: the tower it reads): "
                     f"{json.dumps(attention['mean'])}; {routed}")
    lines.append(f"verdict: {result['verdict']['text']}")
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def _critic_lines(critic: dict[str, Any]) -> list[str]:
    if not critic["applies"]:
        return [f"critic: {critic['reason']}"]
    spread = "; ".join(f"{n} {v['sign_differs_share']:.0%} (mean {v['mean']:+.3g})"
                       for n, v in critic["per_objective"].items())
    return [f"critic (refitted the run's way, {critic['steps']} steps, fit MSE "
            f"{_num(critic['fit_mse'], 5)} vs reward variance "
            f"{_num(critic['reward_variance'], 5)}): share of states whose dR/dalpha sign "
            f"differs from the mean's: {spread}"]


def _recorded(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(_rounded(value))


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value
