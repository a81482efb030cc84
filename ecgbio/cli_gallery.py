"""``ecgbio enroll / identify / verify / gallery ...``: a thin typer layer over :class:`Gallery`.

Mounted by ``ecgbio/cli.py`` (``register(app)``); the error wrapper and printer come from
:mod:`ecgbio.cli_common`, shared by every command module.

Exit codes: 0 success (``verify``: accepted; ``identify``: someone recognised), 1 a negative answer
(``verify``: rejected; ``identify``: unknown), 2 an error (one line on stderr).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ecgbio.cli_common import AsJson, emit, handle_errors
from ecgbio.config import DEFAULT_MODEL
from ecgbio.errors import EcgbioError
from ecgbio.gallery.calibrate import MAX_EER, MIN_GENUINE
from ecgbio.gallery.quality import QualityGate
from ecgbio.gallery.thresholds import DEFAULT_FAR, DEFAULT_MARGIN

if TYPE_CHECKING:
    from ecgbio.gallery import Gallery

EXIT_NO = 1  # verify rejected / identify unknown


ModelDir = Annotated[
    str,
    typer.Option(
        "--model",
        help="Run directory of a trained model (from `ecgbio train`), or 'default': the lead-I "
        "model shipped with ecgbio (a run directory named default: ./default).",
    ),
]
GalleryOpt = Annotated[Path, typer.Option("--gallery", help="Gallery directory.")]
GalleryArg = Annotated[
    Path | None,
    typer.Argument(
        help="Gallery directory (or --gallery, as enroll and identify take it).",
        show_default=False,
    ),
]
GalleryAlso = Annotated[
    Path | None, typer.Option("--gallery", help="Gallery directory (instead of the argument).")
]


def _gallery_path(argument: Path | None, option: Path | None) -> Path:
    """The gallery named either way (``gallery list people`` or ``gallery list --gallery
    people``, as every other command takes it); naming two different ones is refused."""
    if argument is not None and option is not None and argument != option:
        raise EcgbioError(f"two galleries named: {argument} and --gallery {option}; give one")
    chosen = argument if argument is not None else option
    if chosen is None:
        raise EcgbioError("no gallery named: give its directory, or --gallery DIR")
    return chosen


MaxBeats = Annotated[
    int, typer.Option("--max-beats", help="Use only the first K usable beats of a record (0: all).")
]
MaxMinutes = Annotated[
    float,
    typer.Option(
        "--max-minutes",
        help="Read at most the first M minutes of a record (a 24-hour Holter record lends its "
        "first minutes; 0: the whole record).",
    ),
]
#: ``--max-minutes``' default: :data:`ecgbio.embed.READ_LIMIT_S` (kept literal: importing
#: ecgbio.embed would load torch before a command needs it).
DEFAULT_MAX_MINUTES = 10.0
CsvRate = Annotated[
    float | None,
    typer.Option(
        "--fs",
        help="Sampling rate (Hz) of CSV records without a time column (EDF, WFDB and CSV "
        "with a time column give their own).",
        show_default=False,
    ),
]
StandIn = Annotated[
    str,
    typer.Option(
        "--lead",
        help="The record's lead that stands in for the model's (a Holter's ECG1, AliveCor's "
        "ECG); default: the model's own lead.",
    ),
]
Far = Annotated[
    str,
    typer.Option(
        "--far",
        help="Operating point: the false-accept rate the threshold is set for (e.g. 0.01, "
        "0.001) or 'eer'; from the gallery's calibration, else the model's thresholds.json.",
    ),
]
Threshold = Annotated[
    float | None,
    typer.Option("--threshold", help="Use this cosine threshold instead (overrides --far)."),
]
Backend = Annotated[
    str,
    typer.Option(
        "--backend",
        help="What runs the model: auto (ONNX Runtime when the model has model.onnx, else "
        "torch), torch or onnx. Results are the same; onnx starts faster.",
    ),
]


def _open(
    gallery: Path,
    model: str | None = None,
    max_minutes: float = DEFAULT_MAX_MINUTES,
    fs: float | None = None,
    lead: str = "",
    backend: str = "auto",
) -> Gallery:
    """Open (and so validate) the gallery first, then load the model and check it matches."""
    from ecgbio.gallery import Gallery

    opened = Gallery.open(gallery)
    if model is not None:
        try:
            opened.attach(_embedder(model, max_minutes, fs, lead, backend))
        except BaseException:
            opened.close()
            raise
    return opened


def _embedder(
    model: str,
    max_minutes: float = DEFAULT_MAX_MINUTES,
    fs: float | None = None,
    lead: str = "",
    backend: str = "auto",
) -> Any:
    from ecgbio.embed import Embedder

    return Embedder(
        model, read_limit_s=read_limit_s(max_minutes), fs=fs, lead=lead or None, backend=backend
    )


def read_limit_s(max_minutes: float) -> float:
    """``--max-minutes`` in seconds (0: whole records), refused when negative or not finite."""
    if not 0 <= max_minutes < float("inf"):
        raise EcgbioError(f"--max-minutes must be >= 0 (0: whole records), got {max_minutes:g}")
    return 60.0 * max_minutes


# enroll ---------------------------------------------------------------------------------------
@handle_errors
def enroll(
    records: Annotated[
        list[Path],
        typer.Argument(help="Records of this person (WFDB .hea, .edf, .bdf or .csv)."),
    ],
    gallery: GalleryOpt,
    person: Annotated[str, typer.Option("--id", help="The person's id in the gallery.")],
    model: ModelDir = DEFAULT_MODEL,
    max_beats: MaxBeats = 0,
    max_minutes: MaxMinutes = DEFAULT_MAX_MINUTES,
    fs: CsvRate = None,
    lead: StandIn = "",
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace the templates of an enrolled id.")
    ] = False,
    append: Annotated[
        bool, typer.Option("--append", help="Add these records to an enrolled id.")
    ] = False,
    min_beats: Annotated[
        int, typer.Option("--min-beats", help="Refuse a record with fewer usable beats.")
    ] = QualityGate.min_beats,
    min_consistency: Annotated[
        float,
        typer.Option(
            "--min-consistency",
            help="Refuse a record whose beats agree less (median cosine between its beats).",
        ),
    ] = QualityGate.min_consistency,
    index: Annotated[
        str | None,
        typer.Option("--index", help="New gallery: auto, flat, hnsw or ivf (default auto)."),
    ] = None,
    template_mode: Annotated[
        str | None,
        typer.Option(
            "--template-mode",
            help="New gallery: 'each' (a template per record, default) or 'mean' (one per person).",
        ),
    ] = None,
    backend: Backend = "auto",
    as_json: AsJson = False,
) -> None:
    """Enroll a person from one or more records (quality-gated; all or nothing)."""
    from ecgbio.gallery import Gallery, GalleryError, QualityGate, embed_for_enrolment
    from ecgbio.gallery.gallery import check_person_id

    check_person_id(person, "--id")
    if replace and append:
        raise GalleryError("--replace and --append exclude each other")
    mode = "replace" if replace else "append" if append else "new"
    gate = QualityGate(min_beats=min_beats, min_consistency=min_consistency)
    if (gallery / "gallery.sqlite").is_file():
        with _open(gallery) as existing:  # a corrupt gallery fails before the model loads
            for name, asked, actual in (
                ("--index", index, existing.index_kind),
                ("--template-mode", template_mode, existing.template_mode),
            ):
                if asked is not None and asked != actual:
                    raise GalleryError(
                        f"gallery already uses {name} {actual}; change it with "
                        f"`ecgbio gallery configure {gallery} {name} {asked}`",
                        gallery,
                    )
            if mode == "new":
                existing.refuse_existing(person)  # before the slow part
    embedder = _embedder(model, max_minutes, fs, lead, backend)
    # refusals happen here, before a new gallery is created
    embeddings = embed_for_enrolment(embedder, person, records, max_beats, gate)
    opened, created = Gallery.open_or_create(
        gallery, embedder, index=index or "auto", template_mode=template_mode or "each"
    )
    with opened:
        result = opened.enroll_embeddings(person, embeddings, mode=mode)
    result.created_gallery = created
    emit(result.to_dict(), as_json, result.lines())


# identify / verify ----------------------------------------------------------------------------
@handle_errors
def identify(
    record: Annotated[
        Path, typer.Argument(help="Record to identify (WFDB .hea, .edf, .bdf or .csv).")
    ],
    gallery: GalleryOpt,
    model: ModelDir = DEFAULT_MODEL,
    top_k: Annotated[int, typer.Option("--top-k", help="Candidates to list.")] = 5,
    far: Far = DEFAULT_FAR,
    threshold: Threshold = None,
    margin: Annotated[
        float,
        typer.Option("--margin", help="The best person must beat the second-best by this."),
    ] = DEFAULT_MARGIN,
    max_beats: MaxBeats = 0,
    max_minutes: MaxMinutes = DEFAULT_MAX_MINUTES,
    fs: CsvRate = None,
    lead: StandIn = "",
    backend: Backend = "auto",
    as_json: AsJson = False,
) -> None:
    """Who is this? Ranked candidates; 'unknown' unless the best passes the threshold and margin.

    Exit code 0 when someone is recognised, 1 when unknown, 2 on error.
    """
    with _open(gallery, model, max_minutes, fs, lead, backend) as opened:
        result = opened.identify(
            record, top_k=top_k, far=far, threshold=threshold, margin=margin, max_beats=max_beats
        )
    emit(result.to_dict(), as_json, result.lines())
    if result.unknown:
        raise typer.Exit(EXIT_NO)


@handle_errors
def verify(
    record: Annotated[
        Path, typer.Argument(help="Record of the claimant (WFDB .hea, .edf, .bdf or .csv).")
    ],
    gallery: GalleryOpt,
    claim: Annotated[str, typer.Option("--claim", help="The id the claimant says they are.")],
    model: ModelDir = DEFAULT_MODEL,
    far: Far = DEFAULT_FAR,
    threshold: Threshold = None,
    max_beats: MaxBeats = 0,
    max_minutes: MaxMinutes = DEFAULT_MAX_MINUTES,
    fs: CsvRate = None,
    lead: StandIn = "",
    backend: Backend = "auto",
    as_json: AsJson = False,
) -> None:
    """Is this the claimed person? Exit code 0 accept, 1 reject, 2 error."""
    from ecgbio.gallery.gallery import check_person_id

    check_person_id(claim, "--claim")
    with _open(gallery, model, max_minutes, fs, lead, backend) as opened:
        result = opened.verify(claim, record, far=far, threshold=threshold, max_beats=max_beats)
    emit(result.to_dict(), as_json, result.lines())
    if not result.accepted:
        raise typer.Exit(EXIT_NO)


# gallery ... ----------------------------------------------------------------------------------
@handle_errors
def gallery_list(
    gallery: GalleryArg = None, as_json: AsJson = False, gallery_option: GalleryAlso = None
) -> None:
    """List the enrolled persons."""
    gallery = _gallery_path(gallery, gallery_option)
    with _open(gallery) as opened:
        result = opened.listing()
    result.gallery = str(gallery)  # as the user named it
    emit(result.to_dict(), as_json, result.lines())


@handle_errors
def gallery_info(
    gallery: GalleryArg = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Also verify the whole file (SQLite integrity_check, every row and template).",
        ),
    ] = False,
    as_json: AsJson = False,
    gallery_option: GalleryAlso = None,
) -> None:
    """What a gallery holds, its model, index and thresholds."""
    gallery = _gallery_path(gallery, gallery_option)
    import json

    with _open(gallery) as opened:
        data = opened.info(check=check)
    if check and data["integrity"] != "ok":  # a refusal: one line, no report on stdout
        from ecgbio.gallery import GalleryError
        from ecgbio.gallery.store import DB_FILE

        raise GalleryError(
            f"gallery file is corrupt (integrity_check: {data['integrity']}); restore it from a "
            "backup",
            gallery / DB_FILE,
        )
    lines = [f"{k:26s} {v}" for k, v in data.items() if k not in ("beat_config", "calibration")]
    lines.append(f"{'beat_config':26s} {json.dumps(data['beat_config'])}")
    cal = data["calibration"]
    lines.append(
        f"{'calibration':26s} "
        + (
            "none (thresholds from the model's thresholds.json, or the default)"
            if not cal
            else f"EER {cal['eer']:.3f} on {cal['genuine']} genuine / {cal['impostor']} "
            f"impostor scores, at generation {cal['generation']}: {json.dumps(cal['points'])}"
        )
    )
    emit(data, as_json, lines)


@handle_errors
def gallery_remove(
    person: Annotated[str, typer.Option("--id", help="The person to remove.")],
    gallery: GalleryArg = None,
    as_json: AsJson = False,
    gallery_option: GalleryAlso = None,
) -> None:
    """Remove a person and all their templates (overwritten on disk, not just unlinked)."""
    gallery = _gallery_path(gallery, gallery_option)
    from ecgbio.gallery.gallery import check_person_id

    check_person_id(person, "--id")
    with _open(gallery) as opened:
        result = opened.remove_person(person)
    result.gallery = str(gallery)  # as the user named it
    emit(result.to_dict(), as_json, result.lines())


@handle_errors
def gallery_calibrate(
    gallery: GalleryArg = None,
    max_eer: Annotated[
        float, typer.Option("--max-eer", help="Refuse when the scores overlap more than this EER.")
    ] = MAX_EER,
    min_genuine: Annotated[
        int,
        typer.Option("--min-genuine", help="Genuine scores needed (persons with >= 2 records)."),
    ] = MIN_GENUINE,
    clear: Annotated[
        bool, typer.Option("--clear", help="Drop the gallery's thresholds (use the model's again).")
    ] = False,
    as_json: AsJson = False,
    gallery_option: GalleryAlso = None,
) -> None:
    """Set thresholds from the enrolled persons themselves (used before the model's).

    It needs at least two persons and persons enrolled from two or more records (enroll
    --append): their records compared with each other are the genuine scores."""
    gallery = _gallery_path(gallery, gallery_option)
    with _open(gallery) as opened:
        if clear:
            opened.clear_calibration()
            emit({"gallery": str(gallery), "calibration": None}, as_json, ["calibration cleared"])
            return
        result = opened.calibrate(max_eer=max_eer, min_genuine=min_genuine)
    lines = [
        f"calibrated on {result['persons']} persons ({result['persons_multi']} with >= 2 "
        f"templates): {result['genuine']} genuine, {result['impostor']} impostor scores; "
        f"EER {result['eer']:.2%}"
    ]
    for name, p in result["points"].items():
        flag = "--far eer" if name == "eer" else f"--far {name.split('=', 1)[1]}"
        lines.append(
            f"  {name:10s} threshold {p['threshold']:.4f}: identify and verify {flag} use it"
        )
    lines += [
        f"  far={far:g}: not set ({result['impostor']} impostor scores are too few to measure "
        f"a {100 * far:g} % false-accept rate): --far {far:g} keeps the model's threshold"
        for far in result["skipped_fars"]
    ]
    emit({"gallery": str(gallery), **result}, as_json, lines)


@handle_errors
def gallery_configure(
    gallery: GalleryArg = None,
    index: Annotated[str | None, typer.Option("--index", help="auto, flat, hnsw or ivf.")] = None,
    template_mode: Annotated[
        str | None, typer.Option("--template-mode", help="each or mean.")
    ] = None,
    as_json: AsJson = False,
    gallery_option: GalleryAlso = None,
) -> None:
    """Change how the gallery searches; the stored templates are kept as they are."""
    gallery = _gallery_path(gallery, gallery_option)
    with _open(gallery) as opened:
        data = opened.configure(index=index, template_mode=template_mode)
    emit({"gallery": str(gallery), **data}, as_json)


def register(app: typer.Typer) -> None:
    """Mount the gallery commands on ``app`` (the ``ecgbio`` typer app)."""
    app.command("enroll")(enroll)
    app.command("identify")(identify)
    app.command("verify")(verify)
    gallery_app = typer.Typer(help="Inspect and manage galleries.", no_args_is_help=True)
    gallery_app.command("list")(gallery_list)
    gallery_app.command("info")(gallery_info)
    gallery_app.command("remove")(gallery_remove)
    gallery_app.command("calibrate")(gallery_calibrate)
    gallery_app.command("configure")(gallery_configure)
    app.add_typer(gallery_app, name="gallery")
