"""What gallery operations return: plain dataclasses with ``to_dict()`` (JSON) and ``lines()``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ecgbio.gallery.store import PersonRow
from ecgbio.gallery.thresholds import OperatingPoint


@dataclass
class EnrolResult:
    """What one enrolment stored."""

    gallery: str
    person: str
    mode: str
    records: list[dict[str, Any]]
    beats: int
    removed_templates: int
    templates: int
    created_gallery: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        per = " + ".join(str(r["beats"]) for r in self.records)
        n = len(self.records)
        what = {
            "new": f"enrolled from {n} record(s)",
            "replace": f"re-enrolled from {n} record(s), replacing the earlier enrolment",
            "append": f"{n} record(s) added to the enrolment",
        }[self.mode]
        beats = f"{self.beats} beats used" + (f" ({per})" if n > 1 else "")
        out = [
            f"{self.person}: {what}, {beats}; {self.templates} template(s) stored"
            + (f", {self.removed_templates} replaced" if self.removed_templates else "")
        ]
        out += [
            f"  {r['record']}: {r['beats']} beats, consistency {r['consistency']:.3f}"
            for r in self.records
        ]
        if self.created_gallery:
            out.append(f"created gallery {self.gallery}")
        return out + [f"note: {n}" for n in self.notes]


@dataclass
class PersonList:
    """The enrolled persons, as ``gallery list`` prints them and the service returns them."""

    gallery: str
    persons: list[PersonRow]

    def to_dict(self) -> dict[str, Any]:
        return {"gallery": self.gallery, "persons": [asdict(p) for p in self.persons]}

    def lines(self) -> list[str]:
        out = [
            f"{p.name:30s} {p.templates:3d} template(s) {p.beats:5d} beats  updated {p.updated}"
            for p in self.persons
        ]
        return [*out, f"{len(self.persons)} person(s)"]


@dataclass
class Removal:
    """What removing a person took away, and who is left."""

    gallery: str
    removed: str
    templates: int
    persons_left: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        return [
            f"removed {self.removed} ({self.templates} template(s)); "
            f"{self.persons_left} person(s) left"
        ]


@dataclass
class Candidate:
    """A person's score for a probe: the max over their templates (or their mean template)."""

    rank: int
    person: str
    score: float


@dataclass
class Identification:
    """Ranked candidates and the open-set decision (``person`` None means unknown)."""

    probe: dict[str, Any]
    candidates: list[Candidate]
    person: str | None
    reason: str
    operating_point: OperatingPoint
    margin: float
    index: str
    warnings: list[str] = field(default_factory=list)

    @property
    def unknown(self) -> bool:
        return self.person is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.person if self.person is not None else "unknown",
            "person": self.person,
            "unknown": self.unknown,
            "reason": self.reason,
            "candidates": [asdict(c) for c in self.candidates],
            "threshold": self.operating_point.threshold,
            "far": self.operating_point.far,
            "operating_point": self.operating_point.to_dict(),
            "margin": self.margin,
            "index": self.index,
            "probe": self.probe,
            "warnings": self.warnings,
        }

    def lines(self) -> list[str]:
        out = [f"identified: {self.person}" if self.person else "unknown", f"  ({self.reason})"]
        out += [f"  {c.rank}. {c.person:30s} {c.score:.4f}" for c in self.candidates]
        out.append(_point_line(self.operating_point) + f"; margin {self.margin:g} over the second")
        return out + [f"warning: {w}" for w in self.warnings]


@dataclass
class Verification:
    """Accept/reject of a claimed identity, with the score, threshold and the FAR it was set for."""

    claim: str
    accepted: bool
    score: float
    operating_point: OperatingPoint
    probe: dict[str, Any]
    templates: int
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "claim": self.claim,
            "decision": "accept" if self.accepted else "reject",
            "accepted": self.accepted,
            "score": self.score,
            "threshold": self.operating_point.threshold,
            "far": self.operating_point.far,
            "operating_point": self.operating_point.to_dict(),
            "templates": self.templates,
            "probe": self.probe,
            "warnings": self.warnings,
        }

    def lines(self) -> list[str]:
        verdict = "accept" if self.accepted else "reject"
        sign = ">=" if self.accepted else "<"
        return [
            f"{verdict}: {self.claim} (score {self.score:.4f} {sign} threshold "
            f"{self.operating_point.threshold:.4f})",
            _point_line(self.operating_point),
        ] + [f"warning: {w}" for w in self.warnings]


#: Where a threshold came from, in words.
_SOURCES = {
    "gallery": "this gallery's calibration",
    "model": "the model's validation persons",
    "manual": "given with --threshold",
    "default": "a default, not calibrated",
}


def _percent(rate: float) -> str:
    return f"{100 * rate:.2g} %"


def _point_line(point: OperatingPoint) -> str:
    """The threshold and what it means, in words (never 'FAR 0': a rate too small to measure
    on the scores it was set on is said to be so)."""
    source = _SOURCES.get(point.source, point.source)
    if point.point == "eer":
        if point.far is None:
            meaning = "set at the equal-error rate"
        elif point.far == 0:
            meaning = "set at the equal-error rate (no error among the scores it was set on)"
        else:
            meaning = (
                f"set at the equal-error rate ({_percent(point.far)} false accepts and rejects)"
            )
    elif point.far is None:
        meaning = "false-accept rate unknown"
    elif point.far == 0:
        meaning = "no false accept among the scores it was set on"
    else:
        meaning = f"set for {_percent(point.far)} false accepts"
    return f"threshold {point.threshold:.4f}: {meaning}, from {source}"
