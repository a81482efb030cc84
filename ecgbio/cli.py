"""The ``ecgbio`` command: a thin typer layer over the Python API.

Each command parses its options, calls one API function, and prints text (or ``--json``). Every
:class:`~ecgbio.errors.EcgbioError` becomes ``error: <file>: <problem>`` on stderr and exit code 2,
never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from ecgbio.cli_common import DEBUG_ENV, AsJson, emit, handle_errors
from ecgbio.cli_common import EXIT_ERROR as EXIT_ERROR  # re-exported: scripts and tests use it
from ecgbio.cli_export import register as register_export_command
from ecgbio.cli_gallery import DEFAULT_MAX_MINUTES, Backend, CsvRate, MaxMinutes, read_limit_s
from ecgbio.cli_gallery import register as register_gallery_commands
from ecgbio.cli_report import register as register_report_command
from ecgbio.cli_serve import register as register_serve_command
from ecgbio.config import DEFAULT_MODEL, MAX_THREADS, BeatConfig, parse_leads
from ecgbio.errors import EcgbioError


class _WorkOrder(TyperGroup):
    """Lists the commands in the order of the work (records -> model -> gallery), not the order
    in which the modules define them."""

    ORDER = (
        "download",
        "prepare",
        "store",
        "beats",
        "train",
        "evaluate",
        "report",
        "export",
        "enroll",
        "identify",
        "verify",
        "gallery",
        "demo",
    )

    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        rank = {name: i for i, name in enumerate(self.ORDER)}
        return sorted(names, key=lambda n: rank.get(n, len(rank)))


app = typer.Typer(
    name="ecgbio",
    cls=_WorkOrder,
    help="Recognise people by their ECG: prepare records, train, enroll, identify, verify.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: no '<bool>' after flags that take no value
)
prepare_app = typer.Typer(help="Turn ECG records into a beat store.", no_args_is_help=True)
download_app = typer.Typer(help="Download public ECG databases.", no_args_is_help=True)
store_app = typer.Typer(help="Inspect beat stores.", no_args_is_help=True)
app.add_typer(prepare_app, name="prepare")
app.add_typer(download_app, name="download")
app.add_typer(store_app, name="store")

# Shared options -------------------------------------------------------------------------------
Leads = Annotated[str, typer.Option("--leads", help="Lead names, comma-separated, or 'all'.")]
Rate = Annotated[
    int, typer.Option("--rate", help="Pipeline sampling rate in Hz (records are resampled to it).")
]
Workers = Annotated[int, typer.Option("--workers", "-j", help="Processes to use.")]
Before = Annotated[float, typer.Option("--before", help="Window start, seconds before the R-peak.")]
After = Annotated[float, typer.Option("--after", help="Window end, seconds after the R-peak.")]
Normalize = Annotated[
    str, typer.Option("--normalize", help="Amplitude normalisation: none, record or beat.")
]
PeakMethod = Annotated[
    str,
    typer.Option(
        "--peak-method",
        help="R-peak detector: a neurokit2 method or ecgbio_pantompkins (README: MIT-BIH table).",
    ),
]
MinQuality = Annotated[
    float,
    typer.Option(
        "--min-quality",
        help="Reject beats whose correlation with the record's median beat is below this.",
    ),
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing store.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]

_DEFAULT = BeatConfig()


def beat_config(
    leads: str,
    rate: int,
    before: float,
    after: float,
    normalize: str,
    peak_method: str,
    min_quality: float,
) -> BeatConfig:
    return BeatConfig(
        leads=parse_leads(leads),
        rate=rate,
        before_s=before,
        after_s=after,
        normalize=normalize,
        peak_method=peak_method,
        min_quality=min_quality,
    )


def _prepare(
    specs: list,
    out: Path,
    config: BeatConfig,
    workers: int,
    overwrite: bool,
    quiet: bool,
    as_json: bool,
    source: dict[str, Any],
) -> None:
    from ecgbio.prepare import prepare_store

    summary = prepare_store(
        specs,
        out,
        config,
        workers=workers,
        overwrite=overwrite,
        progress=not quiet and not as_json,
        source=source,
    )
    emit(summary.__dict__, as_json, summary.lines())


# prepare ---------------------------------------------------------------------------------------
@prepare_app.command("ptbxl")
@handle_errors
def prepare_ptbxl(
    root: Annotated[Path, typer.Option("--root", help="PTB-XL root (holds ptbxl_database.csv).")],
    out: Annotated[Path, typer.Option("--out", help="Beat store directory to create.")],
    rate: Annotated[
        int,
        typer.Option("--rate", help="100 (records100, the default model's) or 500 (records500)."),
    ] = _DEFAULT.rate,
    leads: Leads = "I",
    workers: Workers = 2,
    download: Annotated[
        bool, typer.Option("--download", help="Download PTB-XL into --root first (resumable).")
    ] = False,
    before: Before = _DEFAULT.before_s,
    after: After = _DEFAULT.after_s,
    normalize: Normalize = _DEFAULT.normalize,
    peak_method: PeakMethod = _DEFAULT.peak_method,
    min_quality: MinQuality = _DEFAULT.min_quality,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Prepare PTB-XL (persons = patient_id, sessions = recording dates)."""
    from ecgbio.sources.ptbxl import download_ptbxl, ptbxl_records

    if download:
        download_ptbxl(root, rate=rate, progress=not quiet and not as_json)
    config = beat_config(leads, rate, before, after, normalize, peak_method, min_quality)
    specs = ptbxl_records(root, rate=rate)
    _prepare(
        specs,
        out,
        config,
        workers,
        overwrite,
        quiet,
        as_json,
        {"kind": "ptbxl", "root": str(root.resolve()), "rate": rate},
    )


@prepare_app.command("wfdb")
@handle_errors
def prepare_wfdb(
    root: Annotated[
        Path,
        typer.Option("--root", help="Folder searched for records (WFDB, .edf, .bdf, .csv)."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Beat store directory to create.")],
    persons: Annotated[
        Path | None,
        typer.Option(
            "--persons",
            help="CSV with columns record, "
            "person[, session]; default: the folder holding a record names its "
            "person.",
        ),
    ] = None,
    rate: Rate = _DEFAULT.rate,
    leads: Leads = "I",
    workers: Workers = 2,
    before: Before = _DEFAULT.before_s,
    after: After = _DEFAULT.after_s,
    normalize: Normalize = _DEFAULT.normalize,
    peak_method: PeakMethod = _DEFAULT.peak_method,
    min_quality: MinQuality = _DEFAULT.min_quality,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
    fs: CsvRate = None,
    lead: Annotated[
        str,
        typer.Option(
            "--lead",
            help="The records' lead read in place of each of --leads (a Holter's ECG1); the "
            "beats are stored under --leads' names, the records table keeps what was read.",
        ),
    ] = "",
) -> None:
    """Prepare any folder of records (e.g. ECG-ID: Person_01/rec_1.hea ...; EDF, BDF and CSV
    files too)."""
    from ecgbio.sources.folder import folder_records

    config = beat_config(leads, rate, before, after, normalize, peak_method, min_quality)
    specs = folder_records(root, persons, fs=fs)
    if lead:
        from dataclasses import replace

        from ecgbio.beats import reading_leads

        stand_in = reading_leads(config, lead)  # as MIT-BIH's MLII (RecordSpec.leads)
        specs = [replace(spec, leads=stand_in) for spec in specs]
    _prepare(
        specs,
        out,
        config,
        workers,
        overwrite,
        quiet,
        as_json,
        {
            "kind": "wfdb",
            "root": str(root.resolve()),
            "persons_csv": str(persons) if persons else None,
            "csv_fs": fs,
            "lead": lead or None,
        },
    )


@prepare_app.command("cinc2017")
@handle_errors
def prepare_cinc2017(
    root: Annotated[
        Path,
        typer.Option("--root", help="CinC 2017 folder (holds training2017/, or is it)."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Beat store directory to create.")],
    include_noisy: Annotated[
        bool,
        typer.Option("--include-noisy", help="Keep the records labelled '~' (too noisy)."),
    ] = False,
    rate: Rate = _DEFAULT.rate,
    leads: Annotated[
        str,
        typer.Option(
            "--leads", help="The store's lead name(s); the record's ECG is read for each."
        ),
    ] = "I",
    workers: Workers = 2,
    before: Before = _DEFAULT.before_s,
    after: After = _DEFAULT.after_s,
    normalize: Normalize = _DEFAULT.normalize,
    peak_method: PeakMethod = _DEFAULT.peak_method,
    min_quality: MinQuality = _DEFAULT.min_quality,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Prepare the PhysioNet/CinC Challenge 2017 training set (AliveCor lead I, 300 Hz): every
    record is its own person, its rhythm label kept as x_rhythm."""
    from ecgbio.sources.cinc2017 import NOISY, cinc2017_listing

    config = beat_config(leads, rate, before, after, normalize, peak_method, min_quality)
    if config.all_leads:
        raise EcgbioError("--leads all: CinC 2017 records have one lead; name the store's lead(s)")
    listing = cinc2017_listing(root, include_noisy=include_noisy, store_leads=len(config.leads))
    if not listing.specs:
        raise EcgbioError(
            f"all {listing.left_out_noisy} records are labelled '{NOISY}' (too noisy); "
            "--include-noisy keeps them",
            listing.folder,
        )
    _prepare(
        listing.specs,
        out,
        config,
        workers,
        overwrite,
        quiet,
        as_json,
        {
            "kind": "cinc2017",
            "root": str(root.resolve()),
            "include_noisy": include_noisy,
            "left_out_noisy": listing.left_out_noisy,
            "labels": listing.labels,
        },
    )
    if not as_json and not include_noisy:  # with --json: the manifest's source.left_out_noisy
        typer.echo(
            f"left out     {listing.left_out_noisy} record(s) labelled '{NOISY}' (too noisy); "
            "--include-noisy keeps them"
        )


# download --------------------------------------------------------------------------------------
@download_app.command("ptbxl")
@handle_errors
def download_ptbxl_cmd(
    root: Annotated[Path, typer.Option("--root", help="Where to put PTB-XL.")],
    rate: Annotated[
        int, typer.Option("--rate", help="100 (the default model's), 500, or 0 for both.")
    ] = _DEFAULT.rate,
    url: Annotated[str, typer.Option("--url", help="Dataset root URL (a mirror).")] = "",
    workers: Workers = 4,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Download PTB-XL from PhysioNet, verified against its SHA256SUMS (resumable)."""
    from ecgbio.sources.ptbxl import PTBXL_URL, download_ptbxl

    summary = download_ptbxl(
        root,
        rate=rate or None,
        base_url=url or PTBXL_URL,
        workers=workers,
        progress=not quiet and not as_json,
    )
    data = {"root": str(root), **summary.__dict__}
    emit(
        data,
        as_json,
        [
            f"{root}: {summary.total} files, {summary.downloaded} downloaded, "
            f"{summary.skipped} already verified, {summary.bytes / 1e6:.1f} MB"
        ],
    )


# train / evaluate ------------------------------------------------------------------------------
def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError as exc:
        raise EcgbioError(f"expected comma-separated integers, got {text!r}") from exc


@app.command("train")
@handle_errors
def train_cmd(
    store: Annotated[Path, typer.Option("--store", help="Beat store (from `ecgbio prepare`).")],
    out: Annotated[Path, typer.Option("--out", help="Run directory to create.")],
    protocol: Annotated[
        str,
        typer.Option(
            "--protocol",
            help="seed, cross-session, unseen, or general (every person trains but a "
            "validation slice; no test set).",
        ),
    ] = "unseen",
    epochs: Annotated[int, typer.Option("--epochs")] = 40,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 256,
    m_per_class: Annotated[
        int, typer.Option("--m-per-class", help="Beats per identity in a batch.")
    ] = 4,
    lr: Annotated[float, typer.Option("--lr")] = 2e-3,
    metric_loss: Annotated[
        str,
        typer.Option(
            "--metric-loss", help="arcface, subcenter-arcface, triplet, arcface+triplet or none."
        ),
    ] = "arcface",
    softmax_weight: Annotated[float, typer.Option("--softmax-weight")] = 1.0,
    metric_weight: Annotated[float, typer.Option("--metric-weight")] = 1.0,
    widths: Annotated[
        str, typer.Option("--widths", help="Channels per residual stage.")
    ] = "32,64,128,256",
    blocks: Annotated[str, typer.Option("--blocks", help="Residual blocks per stage.")] = "1,1,1,1",
    embedding_dim: Annotated[int, typer.Option("--embedding-dim")] = 128,
    dropout: Annotated[float, typer.Option("--dropout")] = 0.2,
    input_norm: Annotated[
        str,
        typer.Option(
            "--input-norm",
            help="none (millivolts, the default model's) or beat (z-score each beat).",
        ),
    ] = "none",
    augment: Annotated[bool, typer.Option("--augment/--no-augment")] = True,
    stretch: Annotated[
        float | None,
        typer.Option(
            "--stretch",
            help="Time stretch about the R-peak (0.08 = +-8 %; default 0.08 with --augment).",
            show_default=False,
        ),
    ] = None,
    shift: Annotated[
        float | None,
        typer.Option(
            "--shift",
            help="R-peak jitter, seconds (default 0.02 with --augment).",
            show_default=False,
        ),
    ] = None,
    gain: Annotated[
        float, typer.Option("--gain", help="Amplitude jitter (0.2 = x U(0.8, 1.2)).")
    ] = 0.2,
    noise: Annotated[float, typer.Option("--noise", help="Added noise, in beat SDs.")] = 0.02,
    axis: Annotated[
        float,
        typer.Option(
            "--axis",
            help="Lead-axis turn, degrees (with --augment): needs a store whose first leads are "
            "I,II; the model reads lead I.",
        ),
    ] = 0.0,
    patience: Annotated[int, typer.Option("--patience", help="Early stopping (0 = off).")] = 8,
    ema: Annotated[
        float,
        typer.Option(
            "--ema",
            help="Keep an exponential moving average of the weights with this decay per step "
            "(0 = off; 0.998: about 500 steps); it is validated and saved.",
        ),
    ] = 0.0,
    val_fraction: Annotated[
        float,
        typer.Option(
            "--val-fraction",
            help="unseen: share of held-out persons used for validation (0: all are test).",
        ),
    ] = 0.2,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    threads: Annotated[int, typer.Option("--threads", help="torch threads (0 = default).")] = 0,
    bf16: Annotated[bool, typer.Option("--bf16", help="bfloat16 autocast on CPU.")] = False,
    device: Annotated[
        str, typer.Option("--device", help="cpu, cuda, cuda:N or auto (a GPU when torch sees one).")
    ] = "cpu",
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing run.")
    ] = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Train a ResNet1d with a softmax identity head and a metric-learning head.

    The defaults are the default model's recipe (millivolt input, stretch +-8 %, shift +-20 ms,
    ArcFace + softmax), except the protocol: the shipped model uses 'general'
    (experiments/train_default.py; docs/model-card.md)."""
    from ecgbio.config import RECIPE_SHIFT_S, RECIPE_STRETCH, ModelConfig, TrainConfig
    from ecgbio.training import train

    if stretch is None:
        stretch = RECIPE_STRETCH if augment else 0.0
    if shift is None:
        shift = RECIPE_SHIFT_S if augment else 0.0
    model_cfg = ModelConfig(
        widths=_ints(widths),
        blocks=_ints(blocks),
        dropout=dropout,
        embedding_dim=embedding_dim,
        input_norm=input_norm,
    )
    train_cfg = TrainConfig(
        protocol=protocol,
        epochs=epochs,
        batch_size=batch_size,
        m_per_class=m_per_class,
        lr=lr,
        metric_loss=metric_loss,
        softmax_weight=softmax_weight,
        metric_weight=metric_weight,
        augment=augment,
        augment_stretch=stretch,
        augment_shift_s=shift,
        augment_gain=gain,
        augment_noise=noise,
        augment_axis_deg=axis,
        patience=patience,
        ema_decay=ema,
        val_fraction=val_fraction,
        seed=seed,
        threads=threads,
        bf16=bf16,
        device=device,
    )
    result = train(
        store,
        out,
        model_cfg,
        train_cfg,
        resume=resume,
        overwrite=overwrite,
        progress=not quiet and not as_json,
        echo=None if as_json else typer.echo,
    )
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun only rank 0 reports
    emit(
        result.__dict__,
        as_json,
        [
            f"run {result.run_dir}: best epoch {result.best_epoch} of "
            f"{result.epochs_run}, {result.classes} classes",
            "test " + _figures_line(result.test)
            if result.test
            else "no test set (protocol general: evaluate with --protocol enrol-probe on a "
            "database the model never saw)",
        ],
    )


@app.command("evaluate")
@handle_errors
def evaluate_cmd(
    store: Annotated[Path, typer.Option("--store", help="Beat store.")],
    model: Annotated[
        str,
        typer.Option("--model", help="Run directory, or 'default': the model shipped with ecgbio."),
    ] = DEFAULT_MODEL,
    protocol: Annotated[
        str,
        typer.Option(
            "--protocol",
            help="The run's protocol (default; enrol-probe for the default model), or "
            "enrol-probe for a store of persons the model never saw.",
        ),
    ] = "",
    enrol_beats: Annotated[
        int, typer.Option("--enrol-beats", help="Enrol from the first K beats (0 = all).")
    ] = 0,
    norm: Annotated[
        str,
        typer.Option(
            "--norm",
            help="Score normalisation: none, z, t, s or as (adaptive S-norm); the cohort is the "
            "gallery's other persons.",
        ),
    ] = "",
    threads: Annotated[
        int, typer.Option("--threads", help="torch / ONNX Runtime threads (0 = default).")
    ] = 0,
    backend: Backend = "auto",
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write metrics.json and scores.npz (for `ecgbio report`) here."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an evaluation already in --out.")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Evaluate a trained model on a store under a protocol."""
    from ecgbio.evaluate import DEFAULT_NORM, evaluate_run

    if 0 < threads <= MAX_THREADS:  # (any other count is refused by evaluate_run)
        import torch

        torch.set_num_threads(threads)
    figures = evaluate_run(
        model,
        store,
        protocol or None,
        enrol_beats=enrol_beats,
        out=out,
        norm=norm or DEFAULT_NORM,
        overwrite=overwrite,
        backend=backend,
        threads=threads,
    )
    head = f"{figures['protocol']} on {store}"
    if "norm" in figures:
        head += f" (score norm {figures['norm']})"
    warnings = [f"warning: {w}" for w in figures.get("warnings", [])]
    wrote = []
    if out is not None:
        names = [n for n in ("metrics.json", "scores.npz") if (Path(out) / n).is_file()]
        wrote = [
            f"wrote {', '.join(str(Path(out) / n) for n in names)}; `ecgbio report {out}` draws them"
        ]
    emit(figures, as_json, [f"{head}: " + _figures_line(figures), *warnings, *wrote])


def _figures_line(figures: dict[str, Any]) -> str:
    """The headline figures in words; a second line for probes recorded on another day."""
    if "rank1" not in figures:  # classification protocols: the softmax head's figures
        keys = ("accuracy", "loss", "beats")
        return ", ".join(_fmt(k, figures[k]) for k in keys if k in figures)
    line = _match_line(figures)
    if isinstance(figures.get("other_day"), dict):
        line += "\nother-day probes: " + _match_line(figures["other_day"])
    return line


def _match_line(f: dict[str, Any]) -> str:
    eer = f"EER {f['eer']:.1%}"
    if "eer_ci" in f:
        eer += f" (95 % CI {f['eer_ci'][0]:.1%}-{f['eer_ci'][1]:.1%})"
    return (
        f"rank-1 {f['rank1']:.1%}, rank-5 {f['rank5']:.1%}, {eer}, "
        f"TAR {f['tar@far=0.01']:.1%} at FAR 1 % and {f['tar@far=0.001']:.1%} at FAR 0.1 %, "
        f"AUC {f['auc']:.3f}, {f['persons']} persons, {f['probes']} probes"
    )


def _fmt(key: str, value: Any) -> str:
    return f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"


# inspection ------------------------------------------------------------------------------------
@app.command("beats")
@handle_errors
def beats_cmd(
    record: Annotated[
        Path,
        typer.Argument(help="Record: WFDB (.hea or without extension), .edf, .bdf or .csv."),
    ],
    leads: Leads = "I",
    rate: Rate = _DEFAULT.rate,
    before: Before = _DEFAULT.before_s,
    after: After = _DEFAULT.after_s,
    normalize: Normalize = _DEFAULT.normalize,
    peak_method: PeakMethod = _DEFAULT.peak_method,
    min_quality: MinQuality = _DEFAULT.min_quality,
    max_minutes: MaxMinutes = DEFAULT_MAX_MINUTES,
    fs: CsvRate = None,
    lead: Annotated[
        str,
        typer.Option(
            "--lead",
            help="The record's lead read in place of --leads' (a Holter's ECG1, AliveCor's ECG).",
        ),
    ] = "",
    as_json: AsJson = False,
) -> None:
    """Read one record and show the beats ecgbio would use from it."""
    from ecgbio.beats import extract_beats, reading_leads
    from ecgbio.records import read_record, stand_in_warnings

    config = beat_config(leads, rate, before, after, normalize, peak_method, min_quality)
    rec = read_record(
        record,
        leads=reading_leads(config, lead),
        rate=config.rate,
        min_duration_s=config.min_duration_s,
        max_duration_s=read_limit_s(max_minutes) or None,
        fs=fs,
    )
    beats = extract_beats(rec, config)
    data = {
        "record": str(rec.path),
        "leads": list(rec.leads),
        "rate": config.rate,
        "duration_s": round(rec.duration_s, 3),
        "session": rec.session,
        "notes": list(rec.notes),
        "detected": beats.detected,
        "rejected": beats.rejected,
        "beats": len(beats),
        "window_samples": config.window_samples,
        "heart_rate_bpm": _heart_rate(beats.peaks, config.rate),
        "quality_median": round(float(_median(beats.quality)), 4),
        "warnings": stand_in_warnings(rec.leads, config.leads) if lead else [],
    }
    dropped = [
        f"{n} {why}"
        for n, why in (
            (beats.rejected - beats.clipped, "rejected for quality"),
            (beats.clipped, "on a saturation rail"),
            (beats.detected - len(beats) - beats.rejected,
             "too close to the record's ends for a whole window"),
        )
        if n > 0
    ]  # fmt: skip
    lines = [
        f"{data['record']}: {len(beats)} beats kept of {beats.detected} detected"
        + (f" ({', '.join(dropped)})" if dropped else "")
        + f", {data['duration_s']} s, leads {','.join(rec.leads)}",
        f"heart rate {data['heart_rate_bpm']} bpm, median quality {data['quality_median']}, "
        f"window {config.window_samples} samples at {config.rate} Hz",
    ] + [f"note: {n}" for n in rec.notes]
    lines += [f"warning: {w}" for w in data["warnings"]]
    emit(data, as_json, lines)


@store_app.command("info")
@handle_errors
def store_info(
    store: Annotated[Path, typer.Argument(help="Beat store directory.")],
    as_json: AsJson = False,
) -> None:
    """Show what a beat store holds and how it was made."""
    from ecgbio.store import BeatStore

    st = BeatStore.open(store)
    per_person = st.index.groupby("person")["record"].nunique()
    data = {
        "store": str(st.root),
        "beats": len(st),
        "shape": list(st.beats.shape),
        "dtype": str(st.beats.dtype),
        "leads": list(st.leads),
        "persons": int(per_person.size),
        "persons_multi_record": int((per_person >= 2).sum()),
        "records": int(st.index["record"].nunique()),
        "records_rejected": int((st.records["status"] != "ok").sum()),
        "config": st.manifest.get("config"),
        "created": st.manifest.get("created"),
    }
    summary = st.manifest.get("summary") or {}
    data["rejected_reasons"] = summary.get("rejected_reasons", {})
    data["repaired"] = summary.get("repaired", {})
    lines = [
        f"{k:22s} {v}"
        for k, v in data.items()
        if k not in ("config", "rejected_reasons", "repaired")
    ]
    lines += [f"rejected               {n} x {why}" for why, n in data["rejected_reasons"].items()]
    lines += [
        f"repaired               {n} record(s): {what}" for what, n in data["repaired"].items()
    ]
    lines.append("config                 " + json.dumps(data["config"]))
    emit(data, as_json, lines)


# demo ------------------------------------------------------------------------------------------
@app.command("demo")
@handle_errors
def demo(
    out: Annotated[Path, typer.Option("--out", help="Working directory for the demo.")] = Path(
        "ecgbio-demo"
    ),
    persons: Annotated[int, typer.Option("--persons", help="Synthetic persons.")] = 48,
    enrolled: Annotated[
        int, typer.Option("--enrolled", help="Persons with 3 sessions, never trained on.")
    ] = 12,
    epochs: Annotated[int, typer.Option("--epochs")] = 12,
    workers: Workers = 2,
    as_json: AsJson = False,
) -> None:
    """Run ecgbio end to end on a built-in synthetic cohort (no download needed)."""
    from ecgbio.demo import run_demo

    result = run_demo(
        out,
        n_persons=persons,
        n_enrolled=enrolled,
        workers=workers,
        epochs=epochs,
        progress=not as_json,
        echo=None if as_json else typer.echo,
    )
    emit(result, as_json, [])


def _heart_rate(peaks: Any, rate: int) -> float:
    import numpy as np

    if len(peaks) < 2:
        return float("nan")
    return round(60.0 * rate / float(np.median(np.diff(peaks))), 1)


def _median(values: Any) -> float:
    import numpy as np

    return float(np.median(values)) if len(values) else float("nan")


register_gallery_commands(app)
register_report_command(app)
register_export_command(app)
register_serve_command(app)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"ecgbio {version('ecgbio')}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            typer.echo("ecgbio (not installed: version unknown)")
        raise typer.Exit()


@app.callback()
def _options(
    debug: Annotated[
        bool,
        typer.Option("--debug", help="Show the traceback behind an unexpected error (a bug)."),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Recognise people by their ECG: prepare records, train, enroll, identify, verify."""
    if debug:
        os.environ[DEBUG_ENV] = "1"


def main() -> None:
    """Console-script entry point."""
    app(prog_name="ecgbio")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
