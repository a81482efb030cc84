"""Where records come from.

A source turns a dataset layout into a list of :class:`RecordSpec`: which WFDB record to read and whose
heart it is. Everything after that (reading, beats, storing) is the same for every source, so a
synthetic cohort, a PTB-XL download and a folder of a user's own records take one code path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

#: A file at the root of a synthetic cohort (``ecgbio.sources.synthetic``): its figures are never
#: evidence of accuracy, so recipes write no results files for it. Here, not in the synthetic
#: module, so that checking for it does not import the ECG simulator and WFDB writer.
SYNTHETIC_MARKER = "SYNTHETIC"


@dataclass(frozen=True)
class RecordSpec:
    """One record to prepare.

    Attributes:
        path: WFDB record path, without extension (``.../00001_hr``); ``.hea`` is accepted too;
            or an ``.edf``, ``.bdf`` or ``.csv`` file.
        person: identity label (string, stable across records of the same person).
        record: record id, unique within the dataset (e.g. PTB-XL ``ecg_id`` or ``Person_01/rec_1``).
        session: session label, ideally the recording date ``YYYY-MM-DD``; empty when unknown.
        order: position of the record among the person's records (0 = earliest), used where dates
            are missing or equal.
        extra: source-specific metadata kept in the store's records table (e.g. ``strat_fold``).
        leads: lead names to read for this record instead of the store's (a database without the
            store's lead lends its nearest one: MIT-BIH has no lead I, so ``MLII`` stands in). The
            beats are stored under the store's lead names; the records table keeps what was read.
        fs: sampling rate (Hz) of a CSV record without a time column; None otherwise.
    """

    path: Path
    person: str
    record: str
    session: str = ""
    order: int = 0
    extra: dict[str, str] = field(default_factory=dict)
    leads: tuple[str, ...] = ()
    fs: float | None = None

    def __hash__(self) -> int:  # extra is a dict; identity is the record id
        return hash(self.record)
