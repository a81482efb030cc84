"""PhysioNet/CinC Challenge 2017 as a training source: 8,528 single-lead records, one identity each.

What it adds: many more lead-I identities than PTB-XL or MIT-BIH, from a consumer device. The records
were taken by people themselves with an AliveCor hand-held recorder (a finger of each hand on an
electrode: lead I), 300 Hz, 9 to 61 s, band-pass filtered by the device. Its one signal is named
``ECG``; it stands in for the store's lead(s) (``RecordSpec.leads``, as MLII does for MIT-BIH), so the
beats are stored under the store's lead name and the records table keeps ``ECG`` as what was read.

What it lacks:

- **Person ids.** The challenge does not say whether two records come from one person, so each record
  is its own identity (person ``cinc2017-A00001``). Some persons may recur under two labels: label
  noise for a classifier or a metric loss, and a reason never to report identification figures on it.
- **Sessions.** The headers' dates are placeholders, not recording dates, and a person has one record,
  so the session is empty and no cross-session protocol can be built on it.

Each record's rhythm label from ``REFERENCE.csv`` (the challenge's final labelling: ``N`` normal, ``A``
atrial fibrillation, ``O`` other rhythm, ``~`` too noisy to classify) is kept in
``RecordSpec.extra["rhythm"]`` (the store's records table column ``x_rhythm``). Records labelled ``~``
are left out unless asked for; :func:`cinc2017_listing` says how many were.

Licence and attribution: the challenge data are open access on PhysioNet under the Open Data Commons
Attribution License v1.0 (ODC-By 1.0). Cite Clifford GD, Liu C, Moody B, Lehman L, Silva I, Li Q,
Johnson AE, Mark RG. "AF Classification from a Short Single Lead ECG Recording: the PhysioNet/Computing
in Cardiology Challenge 2017." Computing in Cardiology 2017; 44. And PhysioNet (Goldberger et al.,
Circulation 2000; 101(23): e215-e220).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ecgbio.errors import EcgbioError
from ecgbio.sources import RecordSpec

#: The folder PhysioNet ships the training set in, and the labels file inside it.
TRAINING_DIR = "training2017"
REFERENCE = "REFERENCE.csv"
#: The one signal of every record, read in place of the store's lead(s).
STAND_IN_LEAD = "ECG"
#: Rhythm labels of the challenge; ``~`` marks a record too noisy to classify.
LABELS = ("N", "A", "O", "~")
NOISY = "~"
#: Every CinC record id starts with this (persons with ``cinc2017-``): no clash with another database.
RECORD_PREFIX = "cinc2017/"


@dataclass(frozen=True)
class CincListing:
    """The records :func:`cinc2017_listing` found.

    Attributes:
        specs: one :class:`RecordSpec` per record kept, in record order.
        left_out_noisy: records labelled ``~`` (too noisy) that were left out (0 with
            ``include_noisy``).
        labels: records found per rhythm label, the left-out ones included.
        folder: the ``training2017`` folder the records were read from.
    """

    specs: list[RecordSpec]
    left_out_noisy: int
    labels: dict[str, int] = field(default_factory=dict)
    folder: Path | None = None


def cinc2017_listing(
    root: str | Path, include_noisy: bool = False, store_leads: int = 1
) -> CincListing:
    """List the CinC 2017 training records under ``root`` (see the module docstring).

    Args:
        root: the folder holding ``training2017/``, or ``training2017/`` itself.
        include_noisy: keep the records labelled ``~`` (too noisy); left out by default.
        store_leads: how many leads the store has; ``ECG`` is read in place of each.

    Raises:
        EcgbioError: the folder is missing or holds no records, ``REFERENCE.csv`` is missing or
            malformed, or a record has no label in it.
    """
    folder = _training_folder(Path(root))
    headers = sorted(folder.glob("*.hea")) if folder.is_dir() else []
    if not headers:
        raise EcgbioError("no CinC 2017 records (.hea files) found", folder)
    reference = _read_reference(folder / REFERENCE)
    unlabelled = [h.stem for h in headers if h.stem not in reference]
    if unlabelled:
        shown = ", ".join(unlabelled[:5]) + (" ..." if len(unlabelled) > 5 else "")
        raise EcgbioError(
            f"{len(unlabelled)} record(s) have no label in it: {shown}", folder / REFERENCE
        )
    specs: list[RecordSpec] = []
    labels = dict.fromkeys(LABELS, 0)
    left_out = 0
    for header in headers:
        name = header.stem
        label = reference[name]
        labels[label] += 1
        if label == NOISY and not include_noisy:
            left_out += 1
            continue
        specs.append(
            RecordSpec(
                path=header.with_suffix(""),
                person=f"cinc2017-{name}",
                record=f"{RECORD_PREFIX}{name}",
                session="",
                order=0,
                extra={"rhythm": label},
                leads=(STAND_IN_LEAD,) * store_leads,
            )
        )
    return CincListing(specs=specs, left_out_noisy=left_out, labels=labels, folder=folder)


def cinc2017_records(
    root: str | Path, include_noisy: bool = False, store_leads: int = 1
) -> list[RecordSpec]:
    """One :class:`RecordSpec` per CinC 2017 record under ``root``, each its own person; the ``~``
    (too noisy) records are left out unless ``include_noisy``. :func:`cinc2017_listing` takes the
    same arguments and also says how many were left out."""
    return cinc2017_listing(root, include_noisy=include_noisy, store_leads=store_leads).specs


def _training_folder(root: Path) -> Path:
    inner = root / TRAINING_DIR
    return inner if inner.is_dir() else root


def _read_reference(path: Path) -> dict[str, str]:
    """``REFERENCE.csv`` (no header, ``A00001,N`` a line) as record name -> label."""
    if not path.is_file():
        raise EcgbioError(
            "CinC 2017 labels file not found (PhysioNet ships it beside the records)", path
        )
    labels: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 2 or not parts[0] or parts[1] not in LABELS:
            raise EcgbioError(
                f"line {number} is not 'record,label' with a label in {' '.join(LABELS)}: "
                f"{line.strip()!r}",
                path,
            )
        name, label = parts
        if labels.get(name, label) != label:
            raise EcgbioError(
                f"record {name} has two labels ({labels[name]} and {label}), line {number}", path
            )
        labels[name] = label
    return labels
