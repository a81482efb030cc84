"""The typed requests: options (the CLI's, under the same names) and ECG samples as JSON.

Why pydantic models rather than reading fields by hand: a field of the wrong type or out of
range is refused (422) with its name before any work starts, an unknown field (a typo such as
``topk``) is refused rather than silently ignored, and the same models describe the API in
``/openapi.json``. A multipart upload carries the same options as form fields, validated by the
same models (form values are text; pydantic reads ``"5"`` as 5).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ecgbio.gallery.quality import QualityGate
from ecgbio.gallery.thresholds import DEFAULT_FAR, DEFAULT_MARGIN
from ecgbio.records import normalize_lead_name

#: units a JSON record may give its samples in, and the factor to millivolts
UNITS_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3, "nv": 1e-6}
MAX_RECORDS = 16  # records in one enrolment request
MAX_LEADS = 16


class Options(BaseModel):
    """Options every record-taking request has (unknown fields are refused)."""

    model_config = ConfigDict(extra="forbid")

    max_beats: int = Field(0, ge=0, description="Use only the first K usable beats (0: all).")
    lead: str = Field(
        "",
        max_length=40,
        description="The record's lead standing in for the model's (a Holter's ECG1); "
        "default: the model's own lead.",
    )
    fs: float | None = Field(
        None,
        gt=0,
        description="Sampling rate (Hz) of an uploaded CSV file without a time column.",
    )


def _far(value: str) -> str:
    """``far`` as the library reads it (``eer`` or a rate in (0, 1)), refused with this field's
    name rather than the CLI's ``--far``."""
    from ecgbio.gallery.errors import GalleryError
    from ecgbio.gallery.thresholds import parse_far

    try:
        parse_far(value)
    except GalleryError as exc:
        raise ValueError(str(exc).removeprefix("--far ")) from None
    return value


class IdentifyOptions(Options):
    """``ecgbio identify``'s options."""

    top_k: int = Field(5, ge=1, le=1000, description="Candidates to list.")
    far: str = Field(
        DEFAULT_FAR,
        max_length=20,
        description="Operating point: the false-accept rate the threshold is set for (0.01, "
        "0.001) or 'eer'.",
    )
    threshold: float | None = Field(
        None, ge=-1, le=1, description="Use this cosine threshold instead (overrides far)."
    )
    margin: float = Field(
        DEFAULT_MARGIN, ge=0, le=2, description="The best must beat the second-best by this."
    )

    check_far = field_validator("far")(_far)


class VerifyOptions(Options):
    """``ecgbio verify``'s options."""

    claim: str = Field(..., description="The person id the claimant says they are.")
    far: str = Field(DEFAULT_FAR, max_length=20, description="As for identify.")
    threshold: float | None = Field(None, ge=-1, le=1, description="As for identify.")

    check_far = field_validator("far")(_far)


class EnrolOptions(Options):
    """``ecgbio enroll``'s options (``mode`` stands for ``--replace`` / ``--append``)."""

    person: str = Field(..., description="The person's id in the gallery.")
    mode: Literal["new", "replace", "append"] = Field(
        "new",
        description="new: refuse an enrolled id (409); replace: replace their templates; "
        "append: add these records to them.",
    )
    min_beats: int = Field(
        QualityGate.min_beats, ge=1, description="Refuse a record with fewer usable beats."
    )
    min_consistency: float = Field(
        QualityGate.min_consistency,
        ge=-1,
        le=1,
        description="Refuse a record whose beats agree less (median cosine between them).",
    )


class Samples(BaseModel):
    """An ECG as JSON: ``samples`` is ``(samples, leads)`` (or one list for one lead)."""

    model_config = ConfigDict(extra="forbid")

    fs: float = Field(..., description="Sampling rate in Hz (50-20,000).")
    leads: list[str] = Field(
        ["I"], min_length=1, max_length=MAX_LEADS, description="Lead names, one per column."
    )
    samples: list[list[float]] | list[float] = Field(
        ..., description="Rows of samples, one value per lead (a flat list: one lead)."
    )
    units: str = Field("mV", description="mV (default), uV or V.")
    name: str = Field(
        "",
        max_length=100,
        description="What results, messages and the gallery call this record: <name>.",
    )

    @field_validator("units")
    @classmethod
    def _known_units(cls, value: str) -> str:
        if value.strip().lower() not in UNITS_TO_MV:
            raise ValueError(f"units must be mV, uV or V, got {value[:20]!r}")
        return value

    @field_validator("fs")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("fs must be a finite number of Hz")
        return value

    @field_validator("name", "leads")
    @classmethod
    def _printable(cls, value: str | list[str]) -> str | list[str]:
        for text in [value] if isinstance(value, str) else value:
            if not text.isprintable() or "<" in text or ">" in text:
                raise ValueError("names must be printable text without < or >")
        return value

    @field_validator("leads")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        """Refuse a lead named twice: leads are matched by name regardless of case and of an
        ``ECG`` prefix (``I``, ``i``, ``ECG I``), so the reader would take the first such column
        and silently ignore the other."""
        seen: dict[str, str] = {}
        for name in value:
            key = normalize_lead_name(name)
            if key in seen:
                same = f" (the same lead as {seen[key]!r})" if seen[key] != name else ""
                raise ValueError(f"lead {name[:40]!r} is named twice{same}")
            seen[key] = name
        return value


class IdentifyJson(IdentifyOptions):
    """POST /v1/identify as JSON."""

    record: Samples


class VerifyJson(VerifyOptions):
    """POST /v1/verify as JSON."""

    record: Samples


class EnrolJson(EnrolOptions):
    """POST /v1/enroll as JSON."""

    records: list[Samples] = Field(..., min_length=1, max_length=MAX_RECORDS)


def _form(options: type[Options], many: bool) -> type[BaseModel]:
    """The multipart form of a request, for the OpenAPI description only (uploads are read by
    :mod:`ecgbio.service.uploads` and their fields validated by ``options``)."""
    text = (
        "The record's files: a WFDB pair (.hea and the .dat it names), or one .edf, .bdf or "
        ".csv file" + ("; several records for one person: repeat the field." if many else ".")
    )
    return type(
        f"{options.__name__.removesuffix('Options')}Form",
        (options,),
        {
            "__annotations__": {"record": list[bytes]},
            "record": Field(..., description=text, json_schema_extra={"format": "binary"}),
            "__doc__": f"The multipart/form-data version of {options.__doc__}",
        },
    )


IdentifyForm = _form(IdentifyOptions, many=False)
VerifyForm = _form(VerifyOptions, many=False)
EnrolForm = _form(EnrolOptions, many=True)
#: the models the OpenAPI description refers to by name
DOCUMENTED = (IdentifyJson, VerifyJson, EnrolJson, IdentifyForm, VerifyForm, EnrolForm)
