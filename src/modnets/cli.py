"""The ``modnets`` command: list, run, reproduce, bench, analyze and hub.

Exit codes: 0 success, 2 bad usage or bad input (one line on stderr, no traceback), 1 failure.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import typer

from .errors import ConfigError, ModnetsError, NumericalError

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


def _run_one(exp, config, out: Path, progress: bool, resume: bool = False):
    """Run the experiment module ``exp`` with ``config``; write its report into ``out``."""
    from .train import world

    t = time.perf_counter()
    report = exp.run(config, out, progress=progress, resume=resume)
    report.metrics["wall_seconds"] = time.perf_counter() - t
    if (size := world()[1]) > 1:
        report.metrics["processes"] = size
        report.summary += f"\n\nTrained data-parallel in {size} processes (torch.distributed)."
    path = report.write(out)
    return report, path


def _config(exp, quick: bool, seed: int, config_file: Path | None, overrides: list[str]):
    """The settings of one run: the preset (``--quick``, ``--seed``), then ``--config FILE``, then each ``--set``."""
    from . import with_overrides, with_values
    from .experiments import read_run_config

    config = exp.Config.for_mode(quick, seed)
    if config_file is not None:
        config = with_values(config, read_run_config(config_file))
    if overrides:
        config = with_overrides(config, overrides)
    return config


def _with_backend(config, name: str, backend: str | None, ray_address: str | None):
    """The experiment's config with its stage backend set (``backend`` and ``ray_address`` fields).

    ``backend=None`` keeps the config's own (the preset's, or a config file's). Only experiments that run
    the stages of a training plan have a ``backend`` field; asking the others for another backend than the
    default is an error, not silently ignored.
    """
    from dataclasses import fields, is_dataclass, replace

    from .train import check_backend

    if backend is not None:
        check_backend(backend)
    if ray_address is not None and backend != "ray":
        raise ConfigError(f"--ray-address needs --backend ray, got --backend {backend or 'sequential'}")
    if backend is None:
        return config
    names = {f.name for f in fields(config)} if is_dataclass(config) else set()
    if "backend" not in names:
        if backend != "sequential":
            raise ConfigError(f"experiment {name!r} has no training-plan stages to run; --backend {backend} "
                              "applies to experiments whose Config has a backend field")
        return config
    changes = {"backend": backend}
    if ray_address is not None:
        if "ray_address" not in names:
            raise ConfigError(f"experiment {name!r} takes no --ray-address (its Config has no ray_address field)")
        changes["ray_address"] = ray_address
    return replace(config, **changes)


def _launch(nproc: int, args: list[str]) -> int:
    """Start ``modnets ARGS`` in ``nproc`` processes with torchrun; the exit code of the group."""
    import subprocess

    # one thread per process, and no C++ notices (e.g. that hard routing left some modules unused)
    env = {"OMP_NUM_THREADS": "1", "TORCH_CPP_LOG_LEVEL": "ERROR", **os.environ}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "--log-dir", tempfile.mkdtemp(prefix="modnets-torchrun-"), "-m", "modnets", *args]
    return subprocess.call(cmd, env=env)


@app.command()
def run(
    name: str = typer.Argument(..., help="experiment name (see `modnets list`)"),
    quick: bool = typer.Option(False, "--quick", help="small settings, a few minutes on 2 CPU cores"),
    config_file: Path | None = typer.Option(
        None, "--config", help="JSON or YAML file of config fields (some or all), or a run's metrics.json to repeat "
        "that run; applied over the preset"
    ),
    overrides: list[str] | None = typer.Option(
        None, "--set", help="PATH=VALUE, e.g. fit.lr=1e-3 or methods='[\"em\"]' (repeatable, applied last); a path "
        "that does not start at a top-level field sets every field whose path ends with it: fit.epochs=1"
    ),
    data: str | None = typer.Option(
        None, "--data", help="real data in place of the generated set: 3dshapes:/path/to/3dshapes.h5 (imn), "
        "clevr:/path/to/CLEVR_v1.0 (nmn); the same as --set data=VALUE"
    ),
    out: Path | None = typer.Option(None, "--out", help="run folder (default runs/NAME[-quick])"),
    seed: int = typer.Option(0, "--seed", help="random seed of the preset"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show progress bars"),
    resume: bool = typer.Option(False, "--resume", help="continue from the checkpoints in the run folder"),
    nproc: int = typer.Option(1, "--nproc", help="train data-parallel in N processes (torch.distributed)"),
    backend: str | None = typer.Option(
        None, "--backend",
        help="run the stages of a training plan: sequential (the default), processes or ray (parallel)",
    ),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="Ray cluster to use with --backend ray (default: start a local Ray)"
    ),
) -> None:
    """Run one experiment; writes report.md, metrics.json, plots, TensorBoard logs and checkpoints.

    The settings are the full preset (or the --quick one, with --seed), then the fields in the --config file,
    then each --set in order. metrics.json records the whole config under "config", so
    `modnets run NAME --config runs/NAME/metrics.json` repeats a run.
    """
    from .experiments import EXPERIMENTS, get_experiment
    from .train import init_from_env, world

    exp = get_experiment(name)  # unknown names fail before any work
    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {nproc}")
    if (nproc > 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1) and not getattr(exp, "DATA_PARALLEL", False):
        parallel = [n for n in EXPERIMENTS if getattr(get_experiment(n), "DATA_PARALLEL", False)]
        raise ConfigError(f"experiment {name!r} does not train data-parallel; --nproc works with: "
                          f"{', '.join(parallel)}")
    overrides = overrides or []
    if data is not None:
        if "data" not in {f.name for f in dataclasses.fields(exp.Config)}:
            takes = [n for n in EXPERIMENTS if "data" in {f.name for f in dataclasses.fields(get_experiment(n).Config)}]
            raise ConfigError(f"experiment {name!r} takes no --data; --data works with: {', '.join(takes)}")
        overrides = [f"data={json.dumps(data)}", *overrides]
    # bad options, files and overrides fail before any work
    config = _with_backend(_config(exp, quick, seed, config_file, overrides), name, backend, ray_address)
    out = out or Path("runs") / (f"{name}-quick" if quick else name)
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        args = ["run", name, "--out", str(out), "--seed", str(seed), *(["--quick"] if quick else []),
                *(["--config", str(config_file)] if config_file is not None else []),
                *[a for item in overrides for a in ("--set", item)],
                *(["--resume"] if resume else []), *([] if progress else ["--no-progress"]),
                *(["--backend", backend] if backend else []), *(["--ray-address", ray_address] if ray_address else [])]
        raise typer.Exit(_launch(nproc, args))
    if init_from_env():  # a harmless notice for parameters with a dimension of size 1 (e.g. routing tables)
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    if world()[0] > 0:  # the other processes train alongside process 0, which writes the report
        with tempfile.TemporaryDirectory(prefix="modnets-rank-") as scratch:
            _run_one(exp, config, Path(scratch), False, resume)
        return
    report, path = _run_one(exp, config, out, progress, resume)
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
    from .experiments import EXPERIMENTS, get_experiment
    from .experiments._report import write_html

    parts = [f"# modnets reproductions ({'quick' if quick else 'full'} mode, seed {seed})", ""]
    metrics = {}
    for name in EXPERIMENTS:
        typer.echo(f"== {name}")
        exp = get_experiment(name)
        report, path = _run_one(exp, exp.Config.for_mode(quick, seed), out / name, progress)
        typer.echo(report.headline + "\n")
        metrics[name] = report.metrics_json()
        parts += [f"## {report.title}", "", report.summary, "", report.headline, "",
                  f"Full report: [{name}/report.md]({name}/report.md)", ""]
    (out / "report.md").write_text("\n".join(parts))
    write_html("\n".join(parts), out / "report.html")  # its links lead to each experiment's report.html
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    typer.echo(f"combined report: {out / 'report.md'}")


@app.command()
def bench(
    name: str = typer.Argument(..., help="benchmark name (see `modnets list`)"),
    as_json: bool = typer.Option(False, "--json", help="print only the JSON result line"),
    quick: bool = typer.Option(False, "--quick", help="fewer repeats (a smoke run, not a measurement)"),
    device: str = typer.Option("cpu", "--device", help="where the benchmark runs: cpu, cuda, cuda:N, mps, auto"),
) -> None:
    """Run one performance benchmark; the last line printed is its JSON result."""
    import inspect

    from .bench import get_benchmark
    from .errors import ConfigError

    run = get_benchmark(name).run
    if "device" in inspect.signature(run).parameters:
        result = run(quick=quick, device=device)
    elif device != "cpu":
        raise ConfigError(f"benchmark {name!r} runs on the CPU only; --device applies to: dispatch")
    else:
        result = run(quick=quick)
    if not as_json:
        typer.echo(f"{result['bench']}: ratio {result['ratio']:.2f} ({result['ratio_is']})")
        for key, value in result["results"].items():
            typer.echo(f"  {key}: {value}")
    typer.echo(json.dumps(result))


@app.command()
def analyze(
    name: str = typer.Argument(
        ..., help="preset assembly (nmn, nmn-prior, nmn-untyped-prior, nmn-combine, figure-4.1), a JSON file "
        "(FILE.json, as Assembly.to_json writes it), or package.module:attribute (an Assembly or a function "
        "returning one)"
    ),
    markdown: bool = typer.Option(False, "--markdown", help="print the table as Markdown"),
    as_json: bool = typer.Option(False, "--json", help="print the rows and the plan as one JSON object"),
) -> None:
    """Dependency table (thesis Table 4.1) and module-wise training plan of a preset or your own assembly."""
    from .analysis import dependencies, format_dependency_table, format_training_plan
    from .errors import UnknownNameError
    from .models import ASSEMBLIES, get_assembly
    from .plan import read_assembly

    if name in ASSEMBLIES:
        assembly = get_assembly(name)
    elif name.endswith(".json") or ":" in name or Path(name).is_file():
        assembly = read_assembly(name)
    else:
        raise UnknownNameError(f"unknown assembly {name!r}; known assemblies: {', '.join(ASSEMBLIES)}; or give "
                               "FILE.json or package.module:attribute")
    report = dependencies(assembly)
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
        return
    typer.echo(f"dependencies of {report.assembly} (thesis 4.1)\n")
    typer.echo(format_dependency_table(report, markdown=markdown))
    typer.echo("\ntraining plan\n")
    typer.echo(format_training_plan(report.plan))


# ---------------------------------------------------------------------------------------------- modnets hub
hub_app = typer.Typer(
    no_args_is_help=True,
    help="The module hub: list, search, show, verify and remove stored modules.",
)
app.add_typer(hub_app, name="hub")

_HUB_HELP = "hub folder (default: $MODNETS_HUB, else $XDG_DATA_HOME/modnets/hub or ~/.local/share/modnets/hub)"
_IMPORT_HELP = "import this module first, so that the module classes it registers are known (repeatable)"


def _hub(root: Path | None, imports: list[str] | None):
    """The hub at ``root``, after importing the ``--import`` modules (their ``register_module`` calls run)."""
    from .hub import Hub, import_modules

    import_modules(imports or [])
    return Hub(root)


def _print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    for line in [headers, ["-" * w for w in widths], *rows]:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def _entry_rows(entries) -> list[list[str]]:
    def metrics(m) -> str:
        return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items())

    return [[e.ref, e.class_name, str(e.signature), e.created[:19].replace("T", " "), metrics(e.metrics)]
            for e in entries]


def _print_entries(entries, as_json: bool, empty: str) -> None:
    if as_json:
        typer.echo(json.dumps([e.to_dict() for e in entries], indent=2))
    elif not entries:
        typer.echo(empty)
    else:
        _print_table(["entry", "class", "signature", "created (UTC)", "metrics"], _entry_rows(entries))


@hub_app.command("list")
def hub_list(
    name: str | None = typer.Argument(None, help="only the versions of this name"),
    hub: Path | None = typer.Option(None, "--hub", help=_HUB_HELP),
    imports: list[str] | None = typer.Option(None, "--import", help=_IMPORT_HELP),
    as_json: bool = typer.Option(False, "--json", help="print a JSON list"),
) -> None:
    """List the stored modules."""
    store = _hub(hub, imports)
    _print_entries(store.entries(name), as_json, f"no modules in the hub at {store.root}")


@hub_app.command("search")
def hub_search(
    inputs: list[str] | None = typer.Option(None, "--input", help="a type you feed, in order (repeat): Mask, Image(3)"),
    no_inputs: bool = typer.Option(False, "--no-inputs", help="only modules that take no program inputs"),
    output: str | None = typer.Option(None, "--output", help="the type you need: Mask, Probs(26)"),
    context: list[str] | None = typer.Option(
        None, "--context", help="NAME=TYPE you supply (repeat): features=FeatureMap(66)"
    ),
    all_versions: bool = typer.Option(False, "--all-versions", help="search every version, not only the latest"),
    hub: Path | None = typer.Option(None, "--hub", help=_HUB_HELP),
    imports: list[str] | None = typer.Option(None, "--import", help=_IMPORT_HELP),
    as_json: bool = typer.Option(False, "--json", help="print a JSON list"),
) -> None:
    """Find modules by signature: inputs that accept what you feed, an output that you accept."""
    from .errors import HubError
    from .hub import parse_type

    if inputs and no_inputs:
        raise HubError("give --input or --no-inputs, not both")
    ctx = None
    if context:
        ctx = {}
        for item in context:
            key, sep, text = item.partition("=")
            if not sep or not key:
                raise HubError(f"invalid --context {item!r}; accepted: NAME=TYPE, e.g. features=FeatureMap(66)")
            ctx[key.strip()] = parse_type(text)
    store = _hub(hub, imports)
    found = store.search(
        inputs=[] if no_inputs else ([parse_type(t) for t in inputs] if inputs else None),
        output=parse_type(output) if output is not None else None,
        context=ctx,
        all_versions=all_versions,
    )
    _print_entries(found, as_json, "no matching modules")


@hub_app.command("show")
def hub_show(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION (default: the latest version)"),
    hub: Path | None = typer.Option(None, "--hub", help=_HUB_HELP),
    imports: list[str] | None = typer.Option(None, "--import", help=_IMPORT_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the manifest as JSON"),
) -> None:
    """Show one entry's manifest: class, config, signature, provenance, weights."""
    from .hub import parse_ref

    entry = parse_ref(ref)
    manifest = _hub(hub, imports).manifest(entry.name, entry.version)
    if as_json:
        typer.echo(json.dumps(manifest.to_dict(), indent=2, sort_keys=True))
        return
    prov = manifest.provenance
    fields = [
        ("entry", manifest.ref),
        ("class", manifest.class_name),
        ("defined in", manifest.class_import or "-"),
        ("signature", str(manifest.signature)),
        ("created", manifest.created),
        ("description", manifest.description or "-"),
        ("weights", f"module.safetensors, {manifest.weights_bytes:,} bytes, sha256 {manifest.weights_sha256}"),
        ("config", json.dumps(manifest.config, sort_keys=True)),
        ("data", json.dumps(prov.data, sort_keys=True)),
        ("seed", str(prov.seed)),
        ("metrics", ", ".join(f"{k}={v}" for k, v in prov.metrics.items()) or "-"),
        ("parents", ", ".join(prov.parents) or "-"),
        ("saved with", ", ".join(f"{k} {v}" for k, v in manifest.versions.items())),
    ]
    for key, value in fields:
        typer.echo(f"{key + ':':<13}{value}")


@hub_app.command("verify")
def hub_verify(
    name: str | None = typer.Argument(None, help="only the versions of this name"),
    rebuild: bool = typer.Option(False, "--rebuild", help="rebuild the index from the entry folders first"),
    hub: Path | None = typer.Option(None, "--hub", help=_HUB_HELP),
    imports: list[str] | None = typer.Option(None, "--import", help=_IMPORT_HELP),
    as_json: bool = typer.Option(False, "--json", help="print a JSON object"),
) -> None:
    """Check every entry (hashes, manifests, classes, signatures, index); exit code 1 on any problem.

    An entry whose class is not registered in this process has its manifest and weights checked and is
    listed apart, with the module to --import so that it can be rebuilt and checked too.
    """
    store = _hub(hub, imports)
    rebuilt = store.rebuild_index() if rebuild else None
    report = store.verify(name)
    if as_json:
        result = {"ok": report.ok, "checked": report.checked, "temporary": report.temporary,
                  "problems": [p._asdict() for p in report.problems],
                  "unregistered": [p._asdict() for p in report.unregistered]}
        if rebuilt is not None:
            result["rebuild_left_out"] = [p._asdict() for p in rebuilt.problems]
        typer.echo(json.dumps(result, indent=2))
    else:
        if rebuilt is not None:
            typer.echo(f"index rebuilt from {rebuilt.checked} entry folders ({len(rebuilt.problems)} left out)")
        if not report.ok:
            summary = f"{len(report.problems)} problems"
        elif report.unregistered:
            summary = "no problems in the files checked"
        else:
            summary = "all fine"
        typer.echo(f"checked {report.checked} entries in {store.root}: {summary}")
        if report.problems:
            _print_table(["entry", "problem"], [[p.ref, p.problem] for p in report.problems])
        if report.unregistered:
            typer.echo(f"{len(report.unregistered)} entries not rebuilt (manifest and weights intact, class not "
                       "registered in this process):")
            _print_table(["entry", "class"], [[p.ref, p.problem] for p in report.unregistered])
        if report.temporary:
            typer.echo(f"{report.temporary} staging folders of interrupted saves under {store.staging_dir}")
    if not report.ok:
        raise typer.Exit(code=1)


@hub_app.command("remove")
def hub_remove(
    ref: str = typer.Argument(..., help="NAME@VERSION, or NAME with --all"),
    all_versions: bool = typer.Option(False, "--all", help="remove every version of NAME"),
    hub: Path | None = typer.Option(None, "--hub", help=_HUB_HELP),
    imports: list[str] | None = typer.Option(None, "--import", help=_IMPORT_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the removed entries as a JSON list"),
) -> None:
    """Remove one version of an entry (or all with --all); version numbers are never reused."""
    from .errors import HubError
    from .hub import parse_ref

    entry = parse_ref(ref)
    if entry.version is None and not all_versions:
        raise HubError(f"give a version ({entry.name}@N) or --all to remove every version of {entry.name!r}")
    if entry.version is not None and all_versions:
        raise HubError(f"give {entry.name}@{entry.version} or --all, not both")
    removed = _hub(hub, imports).remove(entry.name, entry.version, all_versions=all_versions)
    typer.echo(json.dumps(removed) if as_json else "removed " + ", ".join(removed))


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        argv = ["--help"]
    try:
        result = app(args=argv, prog_name="modnets", standalone_mode=False)
    except NumericalError as e:  # training diverged: a failure, not bad input
        typer.echo(f"modnets: error: {_first_line(e)}", err=True)
        return 1
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
