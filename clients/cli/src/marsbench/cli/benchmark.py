"""`marsbench benchmark --config bench.yaml`: tasks x models x query modes (x caption keys), resumable.

Three steps, the first two pure so they are unit-tested without services:

1. `plan_grid`: the config and each model's modalities -> the runs, one `RunCreate` each;
   image-only models are routed to geo-localization image queries, the rest of their grid is
   reported as not applicable.
2. `split_done`: runs whose records are already in the out dir are skipped. A run is identified by
   `RunKey` (task, model, dataset, caption key, landform, query mode and the options that change
   its numbers), read back from the records themselves, so records written by `marsbench run
   --out` into the same folder count too, and nothing but the records has to be kept consistent.
3. `execute`: one indexing job per (task, model, dataset, caption key), then its runs; each record
   is written atomically by `save_run`, so an interrupted grid resumes where it stopped. A failure
   is reported and the grid goes on.

It ends with one leaderboard per task (`leaderboard.py`: models x metrics, parity variant, best per
column marked), printed and written as `leaderboard.md` and `leaderboard-<task>.csv` into the out dir.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from marsbench.cli.benchmark_config import BenchmarkConfig, ModelEntry, load_config
from marsbench.cli.errors import CommandError
from marsbench.cli.leaderboard import leaderboards, parity_metrics, write_leaderboards
from marsbench.cli.progress import JobProgress, format_duration
from marsbench.cli.report import REPORT_DIR, write_report
from marsbench.cli.run import GeoScoring, ServiceUrls, geo_run_request, index, save_run, services
from marsbench.cli.stack import StackUrls
from marsbench.client import EncoderClient, EvaluatorClient, MarsbenchError, ServiceUnavailable
from marsbench.schemas.common import Modality
from marsbench.schemas.jobs import TaskName
from marsbench.schemas.runs import QueryMode, RunCreate, RunRecord
from marsbench.tasks.modalities import indexing_needs, missing_modalities, query_needs, servable_modes
from marsbench.tasks.paired import DEFAULT_CAPTION_KEY

# -- run identity -------------------------------------------------------------------------------

OptionValue = int | float | str | None
Options = tuple[tuple[str, OptionValue], ...]

# The request options that change a run's numbers, per task. Paired `top_lists` only adds a file;
# the hybrid weights matter only to hybrid queries.
_OPTION_TYPES: dict[str, type] = {
    "max_k": int,
    "top_k": int,
    "radius_deg": float,
    "mix_ratio": float,
    "temperature": float,
    "instruction": str,
}


def _option_names(task: TaskName, mode: QueryMode | None) -> tuple[str, ...]:
    if task is TaskName.LANDFORM:
        return ("max_k",)
    if task is TaskName.GEOLOCALIZATION:
        hybrid = ("mix_ratio", "temperature") if mode is QueryMode.HYBRID else ()
        return ("top_k", "radius_deg", *hybrid)
    return ()


def _options(task: TaskName, mode: QueryMode | None, values: Mapping[str, object]) -> Options:
    def normalised(name: str) -> OptionValue:
        value = values.get(name)
        if value is None:
            return None
        try:
            return _OPTION_TYPES[name](value)
        except (TypeError, ValueError):
            return None  # a malformed record matches nothing, so its run is made again

    names = _option_names(task, mode)
    # An instruction override changes the text queries; recorded only when one was given.
    names += ("instruction",) if values.get("instruction") is not None else ()
    return tuple((name, normalised(name)) for name in names)


@dataclass(frozen=True, order=True)
class RunKey:
    """What makes two runs the same measurement."""

    task: TaskName
    model: str
    dataset_dir: str
    caption_key: str | None = None
    landform: str | None = None
    query_mode: QueryMode | None = None
    options: Options = ()


def request_key(request: RunCreate) -> RunKey:
    caption_key = (request.caption_key or DEFAULT_CAPTION_KEY) if request.task is TaskName.PAIRED else None
    return RunKey(
        task=request.task,
        model=request.model,
        dataset_dir=request.dataset_dir,
        caption_key=caption_key,
        landform=request.landform,
        query_mode=request.query_mode,
        options=_options(request.task, request.query_mode, request.model_dump()),
    )


def record_key(record: RunRecord) -> RunKey:
    settings: dict[str, object] = record.settings.model_dump()
    instruction = record.settings.model_prompts.get("query_instruction")
    if instruction is not None:  # the request's override, as the record keeps it
        settings["instruction"] = instruction
    caption_key = (record.caption_key or DEFAULT_CAPTION_KEY) if record.task is TaskName.PAIRED else None
    return RunKey(
        task=record.task,
        model=record.model,
        dataset_dir=record.dataset_dir,
        caption_key=caption_key,
        landform=record.landform,
        query_mode=record.query_mode,
        options=_options(record.task, record.query_mode, settings),
    )


# -- planning (pure) ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedRun:
    label: str  # the model's row name in the leaderboard
    request: RunCreate
    key: RunKey

    def describe(self) -> str:
        key = self.key
        parts = [key.task.value, self.label, key.caption_key, key.landform, key.query_mode]
        return " ".join(str(part) for part in parts if part)


def planned(label: str, request: RunCreate) -> PlannedRun:
    return PlannedRun(label=label, request=request, key=request_key(request))


@dataclass(frozen=True)
class GridPlan:
    runs: list[PlannedRun]
    not_applicable: list[str] = field(default_factory=list)
    models: tuple[str, ...] = ()  # the labels of the models in the plan


def plan_grid(
    config: BenchmarkConfig,
    *,
    modalities: Mapping[str, Collection[Modality]],
    geo_landforms: Sequence[str] = (),
) -> GridPlan:
    """Every run the config asks for, in task, model, caption key / landform, query mode order.

    `modalities` maps model references to what they embed; a model missing from it (its card
    could not be read, reported by the caller) is left out. `geo_landforms` is the landform list
    when the config says `all`."""
    runs: list[PlannedRun] = []
    not_applicable: list[str] = []
    geo = config.geolocalization
    landforms = tuple(geo_landforms if geo.landforms == "all" else geo.landforms)
    models = [entry for entry in config.models if entry.reference() in modalities]
    left_out: dict[str, list[str]] = {}  # model -> what it cannot serve, one note per model
    missing_by_model: dict[str, set[Modality]] = {}

    def cannot(entry: ModelEntry, what: str, missing: Iterable[Modality]) -> None:
        left_out.setdefault(entry.name(), []).append(what)
        missing_by_model.setdefault(entry.name(), set()).update(missing)

    for task in config.tasks():
        dataset = str(config.dataset(task))
        for entry in models:
            offered = modalities[entry.reference()]
            model = entry.reference()
            if task is TaskName.GEOLOCALIZATION:
                servable = servable_modes(offered, geo.modes())
                for mode in geo.modes():
                    if mode not in servable:
                        cannot(
                            entry,
                            f"{task.value} {mode.value} queries",
                            query_needs(task, mode) - set(offered),
                        )
                scoring = GeoScoring(
                    top_k=geo.top_k,
                    radius_deg=geo.radius_deg,
                    mix_ratio=geo.mix_ratio,
                    temperature=geo.temperature,
                )
                runs += [
                    planned(
                        entry.name(),
                        geo_run_request(
                            model=model, dataset_dir=dataset, landform=landform, mode=mode, scoring=scoring
                        ),
                    )
                    for landform in landforms
                    for mode in servable
                ]
                continue
            missing = missing_modalities(query_needs(task) | indexing_needs(task), offered)
            if missing:
                cannot(entry, f"the {task.value} task", missing)
            elif task is TaskName.PAIRED:
                top_lists = config.paired.top_lists
                runs += [
                    planned(
                        entry.name(),
                        RunCreate(
                            task=task, model=model, dataset_dir=dataset, caption_key=key, top_lists=top_lists
                        ),
                    )
                    for key in config.paired.caption_keys
                ]
            else:
                landform_run = RunCreate(
                    task=task, model=model, dataset_dir=dataset, max_k=config.landform.max_k
                )
                runs.append(planned(entry.name(), landform_run))
    for name, parts in left_out.items():
        missing = sorted(missing_by_model[name])
        hint = (
            " (image-only models take part in geo-localization image queries only)"
            if Modality.TEXT in missing
            else ""
        )
        embeds = " or ".join(m.value for m in missing)
        not_applicable.append(f"{name} does not embed {embeds}, so leaves out {', '.join(parts)}{hint}")
    return GridPlan(runs, not_applicable, tuple(entry.name() for entry in models))


def split_done(
    runs: Sequence[PlannedRun], done: Collection[RunKey]
) -> tuple[list[PlannedRun], list[PlannedRun]]:
    """(to run, finished earlier)."""
    return [run for run in runs if run.key not in done], [run for run in runs if run.key in done]


def headline(record: RunRecord) -> str:
    """One run's main numbers for the progress line (x100)."""
    m = parity_metrics(record)
    if record.task is TaskName.LANDFORM:
        return f"mAP {100 * m['mAP']:.2f}"
    if record.task is TaskName.PAIRED:
        return f"I2T R@1 {100 * m['i2t_r1']:.2f}, T2I R@1 {100 * m['t2i_r1']:.2f}"
    return f"F1 {100 * m['f1']:.2f} at k={int(m['k'])}, AUPRC {100 * m['auprc']:.2f}"


# -- I/O: records, model cards, execution --------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    what: str
    error: str
    runs: int = 0  # planned runs it cost (0: a model or task left out of the plan)


def finished_records(out_dir: Path) -> dict[RunKey, RunRecord]:
    """The run records in `out_dir` by key (the newest where one run was made twice). Other JSON
    files there (top-10 lists) are not records and are passed over."""
    found: dict[RunKey, RunRecord] = {}
    for path in sorted(out_dir.glob("*.json")):
        try:
            record = RunRecord.model_validate_json(path.read_bytes())
        except (OSError, ValidationError, ValueError):
            continue
        key = record_key(record)
        if key not in found or found[key].created_at < record.created_at:
            found[key] = record
    return found


def describe_models(
    encoder_urls: Sequence[str], entries: Sequence[ModelEntry], *, check_files: bool
) -> tuple[dict[str, list[Modality]], list[Failure]]:
    """Each model's modalities from the encoder's registry (nothing is loaded). A model the encoder
    does not know, or whose checkpoint is missing, is a failure and leaves the grid."""
    modalities: dict[str, list[Modality]] = {}
    failures: list[Failure] = []
    with EncoderClient(list(encoder_urls)) as encoder:
        for i, entry in enumerate(entries):
            what = f"model {entry.name()}"
            # Checked here only when the encoder runs in this process; a remote one reads its own disk.
            if check_files and entry.checkpoint is not None and not entry.checkpoint.is_file():
                error = f"checkpoint file {entry.checkpoint} does not exist (set models[{i}].checkpoint)"
                failures.append(Failure(what, error))
                continue
            try:
                modalities[entry.reference()] = encoder.model_info(entry.reference(), load=False).modalities
            except ServiceUnavailable as exc:
                # No encoder, no grid: say so once rather than once per model.
                raise CommandError(f"the encoder does not answer: {exc}") from None
            except MarsbenchError as exc:
                failures.append(Failure(what, str(exc)))
    return modalities, failures


def resolve_landforms(config: BenchmarkConfig) -> tuple[list[str], list[Failure]]:
    """The geo landforms when the config says `all`: the dataset's ground-truth catalogues."""
    if TaskName.GEOLOCALIZATION not in config.tasks() or config.geolocalization.landforms != "all":
        return [], []
    from marsbench.datasets.errors import DatasetError
    from marsbench.datasets.geo import landforms

    dataset = config.dataset(TaskName.GEOLOCALIZATION)
    try:
        found = landforms(dataset)
    except (DatasetError, OSError) as exc:
        return [], [Failure("geolocalization", f"cannot list the landforms of {dataset}: {exc}")]
    if not found:
        return [], [Failure("geolocalization", f"no ground_truth/<landform>.csv under {dataset}")]
    return found, []


Echo = Callable[[str], None]


def execute(
    urls: StackUrls, todo: Sequence[PlannedRun], out_dir: Path, *, echo: Echo, progress: JobProgress
) -> tuple[int, list[Failure]]:
    """Index once per (task, model, dataset, caption key), then make its runs.
    Returns how many runs succeeded, and the failures."""
    groups: dict[tuple[TaskName, str, str, str | None], list[PlannedRun]] = {}
    for run in todo:
        key = run.key
        groups.setdefault((key.task, key.model, key.dataset_dir, key.caption_key), []).append(run)
    failures: list[Failure] = []
    done = succeeded = 0
    for (task, model, dataset, caption_key), runs in groups.items():
        echo(f"indexing {task.value} {runs[0].label}{f' {caption_key}' if caption_key else ''} ...")
        try:
            job = index(
                urls, task=task, dataset_dir=Path(dataset), model=model, on_progress=progress,
                caption_key=caption_key,
            )  # fmt: skip
        # A grid runs for hours: any failure of one collection is reported and the grid goes on.
        except Exception as exc:
            error = f"indexing failed: {_error_text(exc)}"
            echo(f"  {error}")
            what = f"{task.value} {runs[0].label}{f' {caption_key}' if caption_key else ''}"
            failures.append(Failure(what, error, runs=len(runs)))
            for run in runs:
                done += 1
                echo(f"[{done}/{len(todo)}] {run.describe()}: FAILED (not indexed)")
            continue
        with EvaluatorClient(urls.evaluator) as evaluator:
            for run in runs:
                done += 1
                started = time.perf_counter()
                try:
                    saved = save_run(evaluator, evaluator.create_run(run.request), job, out_dir)
                except Exception as exc:  # as above: one run's failure does not end the grid
                    failures.append(Failure(run.describe(), _error_text(exc), runs=1))
                    echo(f"[{done}/{len(todo)}] {run.describe()}: FAILED ({_error_text(exc)})")
                    continue
                succeeded += 1
                elapsed = format_duration(time.perf_counter() - started)
                echo(f"[{done}/{len(todo)}] {run.describe()}: {headline(saved.record)} ({elapsed})")
    return succeeded, failures


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, CommandError | MarsbenchError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


# -- the command --------------------------------------------------------------------------------


def _counts(runs: Iterable[PlannedRun]) -> str:
    by_task: dict[str, int] = {}
    for run in runs:
        by_task[run.key.task.value] = by_task.get(run.key.task.value, 0) + 1
    return ", ".join(f"{task} {n}" for task, n in by_task.items()) or "none"


def run_benchmark(
    config_path: Path,
    *,
    out_dir: Path | None,
    urls: ServiceUrls,
    data_dir: Path,
    dry_run: bool = False,
    stream: TextIO | None = None,
) -> int:
    """Plan, skip finished runs, execute, print and write the leaderboards. Exit status 1 when any
    run failed (the others are kept: a rerun makes only the missing ones)."""
    stream = stream or sys.stdout

    def echo(line: str) -> None:
        print(line, file=stream, flush=True)

    config = load_config(config_path)
    out = out_dir.resolve() if out_dir is not None else config.out
    if out is None:
        raise CommandError(f"no output folder: set 'out' in {config_path} or pass --out")
    external = bool(urls.indexer or urls.evaluator)
    if external and not urls.encoder:
        raise CommandError("with --indexer-url/--evaluator-url, give --encoder-url too (for the model cards)")
    out.mkdir(parents=True, exist_ok=True)
    with services(urls, data_dir=data_dir) as running:
        encoders = [url.strip() for url in running.encoder.split(",") if url.strip()]
        modalities, failures = describe_models(encoders, config.models, check_files=not external)
        landforms, landform_failures = resolve_landforms(config)
        failures += landform_failures
        plan = plan_grid(config, modalities=modalities, geo_landforms=landforms)
        todo, finished = split_done(plan.runs, finished_records(out).keys())
        models = len(plan.models)
        echo(f"benchmark grid {config_path}: {len(plan.runs)} runs ({_counts(plan.runs)}), {models} model(s)")
        echo(f"  finished earlier, skipped: {len(finished)}; to run: {len(todo)} ({_counts(todo)})")
        for note in plan.not_applicable:
            echo(f"  not applicable: {note}")
        for failure in failures:
            echo(f"  left out: {failure.what}: {failure.error}")
        echo(f"  records and leaderboard: {out}")
        if dry_run:
            for run in todo:
                echo(f"  would run: {run.describe()}")
            return 1 if failures else 0
        ran, failed = execute(running, todo, out, echo=echo, progress=JobProgress())
        failures += failed
    records = finished_records(out)
    boards = leaderboards(plan.runs, records)
    for board in boards:
        scale = "x100, MedR a rank" if board.task is TaskName.PAIRED else "x100"
        echo(f"\n{board.title}, parity variant ({scale}; * best per column):")
        echo(board.text())
    written = write_leaderboards(boards, out, config_path=config_path)
    failed_runs = sum(failure.runs for failure in failures)
    left_out = sum(1 for failure in failures if not failure.runs)
    echo(
        f"\nsummary: {len(plan.runs)} planned, {len(finished)} finished earlier (skipped), {ran} ran now, "
        f"{failed_runs} failed" + (f", {left_out} model(s)/task(s) left out of the plan" if left_out else "")
    )
    if failures:
        echo("failed or left out:")
        for failure in failures:
            runs = f" ({failure.runs} run{'s' * (failure.runs != 1)})" if failure.runs else ""
            echo(f"  - {failure.what}{runs}: {failure.error}")
    echo("leaderboard: " + ", ".join(str(path) for path in written))
    if records:  # the same records as a page with figures (curves, per-class bars, maps)
        echo(f"report: {write_report(out, out / REPORT_DIR)}")
    return 1 if failures else 0
