"""The ``modnets`` command: list, run, reproduce and bench.

Exit codes: 0 success, 2 bad usage or bad input (one line on stderr, no traceback), 1 failure.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import typer

from .errors import ModnetsError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="modnets: modular neural networks in PyTorch. Reproduce experiments and run benchmarks.",
)


@app.command("list")
def list_() -> None:
    """List the experiments and benchmarks."""
    from .bench import BENCHMARKS
    from .experiments import EXPERIMENTS

    typer.echo("experiments (modnets run NAME [--quick]):")
    for name, (_, text) in EXPERIMENTS.items():
        typer.echo(f"  {name:<10} {text}")
    typer.echo("benchmarks (modnets bench NAME [--json]):")
    for name, (_, text) in BENCHMARKS.items():
        typer.echo(f"  {name:<10} {text}")


def _run_one(name: str, quick: bool, out: Path, seed: int, progress: bool):
    from .experiments import get_experiment

    exp = get_experiment(name)
    config = exp.Config.for_mode(quick, seed)
    t = time.perf_counter()
    report = exp.run(config, out, progress=progress)
    report.metrics["wall_seconds"] = time.perf_counter() - t
    path = report.write(out)
    return report, path


@app.command()
def run(
    name: str = typer.Argument(..., help="experiment name (see `modnets list`)"),
    quick: bool = typer.Option(False, "--quick", help="small settings, a few minutes on 2 CPU cores"),
    out: Path | None = typer.Option(None, "--out", help="run folder (default runs/NAME[-quick])"),
    seed: int = typer.Option(0, "--seed", help="random seed"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show progress bars"),
) -> None:
    """Run one experiment; writes report.md, metrics.json, plots and TensorBoard logs."""
    from .experiments import get_experiment

    get_experiment(name)  # unknown names fail before any work
    out = out or Path("runs") / (f"{name}-quick" if quick else name)
    report, path = _run_one(name, quick, out, seed, progress)
    typer.echo(report.headline)
    typer.echo(f"\nreport: {path}  ({report.metrics['wall_seconds']:.0f} s)")


@app.command()
def reproduce(
    quick: bool = typer.Option(False, "--quick", help="small settings for every experiment"),
    out: Path = typer.Option(Path("runs/reproduce"), "--out", help="folder for all reports"),
    seed: int = typer.Option(0, "--seed", help="random seed"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show progress bars"),
) -> None:
    """Run every experiment and write one combined report."""
    from .experiments import EXPERIMENTS

    parts = [f"# modnets reproductions ({'quick' if quick else 'full'} mode, seed {seed})", ""]
    metrics = {}
    for name in EXPERIMENTS:
        typer.echo(f"== {name}")
        report, path = _run_one(name, quick, out / name, seed, progress)
        typer.echo(report.headline + "\n")
        metrics[name] = report.metrics
        parts += [f"## {report.title}", "", report.summary, "", report.headline, "",
                  f"Full report: [{name}/report.md]({name}/report.md)", ""]
    (out / "report.md").write_text("\n".join(parts))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    typer.echo(f"combined report: {out / 'report.md'}")


@app.command()
def bench(
    name: str = typer.Argument(..., help="benchmark name (see `modnets list`)"),
    as_json: bool = typer.Option(False, "--json", help="print only the JSON result line"),
    quick: bool = typer.Option(False, "--quick", help="fewer repeats (a smoke run, not a measurement)"),
) -> None:
    """Run one performance benchmark; the last line printed is its JSON result."""
    from .bench import get_benchmark

    result = get_benchmark(name).run(quick=quick)
    if not as_json:
        typer.echo(f"{result['bench']}: ratio {result['ratio']:.2f} ({result['ratio_is']})")
        for key, value in result["results"].items():
            typer.echo(f"  {key}: {value}")
    typer.echo(json.dumps(result))


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        argv = ["--help"]
    try:
        result = app(args=argv, prog_name="modnets", standalone_mode=False)
    except ModnetsError as e:
        typer.echo(f"modnets: error: {_first_line(e)}", err=True)
        return 2
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("modnets: aborted", err=True)
        return 130
    except typer.Exit as e:
        return e.exit_code
    except Exception as e:
        # Usage errors of the command-line parser (unknown option, missing argument, bad value) carry
        # exit code 2 and a ``format_message``; anything else is a bug and keeps its traceback.
        if getattr(e, "exit_code", None) == 2 and hasattr(e, "format_message"):
            typer.echo(f"modnets: error: {_first_line(e.format_message())}", err=True)
            return 2
        raise
    return result if isinstance(result, int) else 0


def _first_line(message: object) -> str:
    text = str(message).strip()
    return text.splitlines()[0] if text else type(message).__name__


def run_main() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run_main()
