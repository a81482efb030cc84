"""MIT-BIH Arrhythmia as a training source: 47 persons, 30 minutes each, lead MLII.

What it adds to a model trained on 10 s records: the beat-to-beat variability of one heart over half an
hour (ectopic beats, rate changes, posture, noise). It has no lead I, so MLII, the limb lead it records
in 46 of its 48 records, stands in (records 102 and 104 lack it and are rejected with that reason).
Records 201 and 202 come from one person (the database's documentation). Ids are prefixed with
``mitdb`` so they cannot collide with another database's in a combined store (PTB-XL's ecg_id 100 and
MIT-BIH's record 100 are different people).
"""

from __future__ import annotations

from pathlib import Path

from ecgbio.errors import EcgbioError
from ecgbio.sources import RecordSpec
from ecgbio.sources.folder import find_records

#: Records of one person, as MIT-BIH's documentation says.
SAME_PERSON = {"202": "201"}
STAND_IN_LEAD = "MLII"


def mitdb_records(
    root: str | Path, lead: str = STAND_IN_LEAD, store_leads: int = 1
) -> list[RecordSpec]:
    """One :class:`RecordSpec` per MIT-BIH record under ``root``, reading ``lead`` in place of each
    of the store's ``store_leads`` leads (see module docstring). A store of leads I and II (for
    the lead-axis augmentation) gets MLII twice: with one limb lead there is no axis to turn, and
    the rotation reduces to a gain."""
    root = Path(root)
    paths = find_records(root) if root.is_dir() else []
    if not paths:
        raise EcgbioError("no MIT-BIH records (.hea files) found", root)
    specs = []
    for path in paths:
        name = path.name
        person = SAME_PERSON.get(name, name)
        order = 1 if name in SAME_PERSON else 0
        specs.append(
            RecordSpec(
                path=path,
                person=f"mitdb-{person}",
                record=f"mitdb/{name}",
                order=order,
                leads=(lead,) * store_leads,
            )
        )
    return specs
