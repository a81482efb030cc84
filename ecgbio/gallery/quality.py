"""The enrolment quality gate: a template is only as good as the beats averaged into it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ecgbio.gallery.errors import GalleryError

if TYPE_CHECKING:
    from ecgbio.embed import RecordEmbedding


@dataclass(frozen=True)
class QualityGate:
    """What an enrolled record must show: enough usable beats, and beats that agree.

    ``min_consistency`` bounds :meth:`RecordEmbedding.consistency` (the median cosine between the
    record's beat embeddings): beats that disagree mean noise, artefacts or ectopic beats, and a
    template averaged from them would describe nobody.

    Defaults, measured with the PTB-XL cross-session model (100 Hz, lead I) on the 310 ECG-ID
    records (persons it never saw): consistency has median 0.76 and 1st percentile 0.30 there,
    and white noise added to a clean record (0.84) brings it to 0.61 at 0 dB SNR and 0.50 at
    -6 dB. The 19 records below 0.5 gave genuine scores like the others (median 0.87 vs 0.88),
    so a stricter default would refuse ~6 % of usable real records for no measured gain; 0.3
    refuses 3 of 310. Three beats: templates from 3, 5, 10 or all beats identify about equally
    well on PTB-XL (the run's ``by_enrol_beats``: rank-1 0.62, 0.63, 0.61, 0.63).
    """

    min_beats: int = 3
    min_consistency: float = 0.3

    def __post_init__(self) -> None:
        if self.min_beats < 1:
            raise GalleryError(f"--min-beats must be >= 1, got {self.min_beats}")
        if not -1.0 <= self.min_consistency <= 1.0:
            raise GalleryError(
                f"--min-consistency must be a cosine in [-1, 1], got {self.min_consistency}"
            )

    def problem(self, emb: RecordEmbedding) -> str | None:
        if emb.n_beats < self.min_beats:
            return f"too few usable beats: {emb.n_beats} (need {self.min_beats})"
        consistency = emb.consistency()
        if consistency < self.min_consistency:
            return (
                f"its beats disagree with each other: consistency {consistency:.2f} < "
                f"{self.min_consistency:.2f} (noise or artefacts)"
            )
        return None
