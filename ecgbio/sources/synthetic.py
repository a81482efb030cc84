"""A synthetic PTB-XL-shaped cohort, for unit tests and the built-in demo only.

Why it exists: the pipeline must be testable without a 3 GB download, and the demo must run offline.
Why it mirrors PTB-XL file for file (``records500/00000/00001_hr``, ``records100/...``,
``ptbxl_database.csv``, ``RECORDS``; WFDB format 16, 1000 adu/mV): synthetic data then takes exactly
the code path of a real download, so a test that passes here exercises the real reader, not a
shortcut. Why it must never back an accuracy claim: the persons are drawn from a handful of random
parameters, so they are far easier to tell apart than real people are.

Generation approach (measured on the 2-core development machine):

* ``neurokit2.ecg_simulate(method="ecgsyn")`` integrates the ECGSYN ODE with a Python callback:
  ~0.11 s per single-lead 10 s record and ~1.35 s per 12-lead record (``method="multileads"``
  integrates once per lead), i.e. ~32 s for 8 persons x 3 records. It also rescales every output
  to [-0.4, 1.2] mV, which would erase the per-person amplitudes that make persons differ.
* Instead we evaluate ECGSYN's morphology model in closed form. ECGSYN's z-equation is a sum of
  terms ``-a_i * dtheta_i * exp(-dtheta_i^2 / 2 b_i^2)``, whose integral is a Gaussian bump
  ``a_i b_i^2 exp(-dtheta_i^2 / 2 b_i^2)`` per wave (P, Q, R, S, T) per beat. We place those bumps
  directly in time around each R-peak, starting from ECGSYN's default angles and widths converted to
  seconds at 60 bpm, and drop ECGSYN's 1-s relaxation term (a slow baseline drift we add explicitly
  as baseline wander instead). This is vectorised numpy: the signals of 8 persons x 3 records x
  10 s x 12 leads take ~0.4 s; writing them at 500 Hz and 100 Hz brings the total to ~1-2 s, most
  of it inside ``wfdb.wrsamp`` (kept anyway: the files are then written by the reference writer).

12-lead simplification (documented, not physiological in detail): each wave is a fixed 3-D "cardiac
dipole" per person (a vectorcardiographic caricature) and each lead is a fixed lead vector, so the
lead gain of wave i in lead k is ``lead_vector_k . dipole_i`` (a person-specific version of
neurokit2's ``multileads`` gamma matrix). Limb leads obey Einthoven/Goldberger exactly (noise
included, up to 1 uV rounding), and R-wave progression across V1..V6 emerges from the dipole
directions. There is no propagation delay between leads and no pathology.

What varies and where:

* per person (stable across sessions): heart-axis rotation, per-wave dipole direction and size,
  wave timings and widths, precordial electrode gains, resting heart rate. Hearts without a
  dominant lead-I R wave are redrawn, so R-peaks are reliably detectable on lead I;
* per session (record = recording date): heart rate (55-95 bpm around the person's resting rate),
  HRV (LF/HF sinusoidal RR modulation plus jitter), respiratory amplitude modulation, a small
  dipole rotation (electrode placement/posture), overall amplitude (+-15%), baseline wander,
  white noise and a little 50 Hz mains hum (PTB-XL was recorded in Germany).

Wave timings stretch with RR like real ECGs: QRS duration is rate-independent, the T wave follows
Bazett (sqrt(RR)), the P wave a milder RR^0.25.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import wfdb
from scipy.signal import resample_poly

from ecgbio.io import atomic_write_text
from ecgbio.sources import SYNTHETIC_MARKER

#: Lead names exactly as in PTB-XL headers.
PTBXL_LEADS: tuple[str, ...] = (
    "I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6",
)  # fmt: skip
#: Columns of the synthetic ``ptbxl_database.csv`` (a subset of the real file's, same spelling).
CSV_COLUMNS: tuple[str, ...] = (
    "ecg_id", "patient_id", "age", "sex", "recording_date", "strat_fold", "filename_lr",
    "filename_hr",
)  # fmt: skip
LOW_RATE = 100
ADC_GAIN = 1000.0  # adu per mV, as PTB-XL: 1 adu = 1 uV

# ECGSYN defaults (P, Q, R, S, T): angles (deg) and Gaussian widths (rad) on a 1 s (60 bpm) cycle,
# converted to seconds relative to the R-peak: t = angle / (2 pi) * 1 s.
_ECGSYN_TI_DEG = np.array([-70.0, -15.0, 0.0, 15.0, 100.0])
_ECGSYN_BI_RAD = np.array([0.25, 0.1, 0.1, 0.1, 0.4])
_BASE_OFFSET_S = np.deg2rad(_ECGSYN_TI_DEG) / (2 * np.pi)
_BASE_WIDTH_S = _ECGSYN_BI_RAD / (2 * np.pi)
#: offsets and widths scale with (RR / 1 s) ** exponent: P mild, QRS fixed, T Bazett.
_RR_EXPONENT = np.array([0.25, 0.0, 0.0, 0.0, 0.5])

# Person-level spread of timings (s, additive) and of widths / dipole sizes (log-normal sigma).
_OFFSET_SD_S = np.array([0.015, 0.004, 0.0, 0.004, 0.03])
_WIDTH_LOG_SD = np.array([0.2, 0.18, 0.18, 0.18, 0.2])
_SIZE_LOG_SD = np.array([0.35, 0.45, 0.2, 0.45, 0.35])

# Wave dipoles in body coordinates (x: left, y: inferior, z: anterior), mV at the lead vector scale.
# Q: septal, rightward-anterior; R: main left-inferior-posterior; S: late basal, right-superior-
# posterior; P and T roughly along the R axis (T a bit anterior), giving upright P/T in I and II.
_BASE_DIPOLES = np.array(
    [
        [0.10, 0.16, 0.02],  # P
        [-0.12, 0.02, 0.15],  # Q
        [0.85, 0.75, -0.45],  # R
        [-0.15, -0.15, -0.30],  # S
        [0.20, 0.22, 0.12],  # T
    ]
)


def _frontal(angle_deg: float) -> list[float]:
    angle = np.deg2rad(angle_deg)
    return [float(np.cos(angle)), float(np.sin(angle)), 0.0]


def _horizontal(angle_deg: float, gain: float) -> list[float]:
    angle = np.deg2rad(angle_deg)
    return [gain * float(np.cos(angle)), 0.0, gain * float(np.sin(angle))]


def _lead_vectors() -> np.ndarray:
    """Fixed (12, 3) lead vectors: I and II in the frontal plane, the rest derived like a real ECG.

    III and the augmented leads follow Einthoven/Goldberger from I and II; precordial leads sit in
    the horizontal plane from V1 (right of the sternum, anterior) to V6 (left, lateral).
    """
    lead_i, lead_ii = np.array(_frontal(0.0)), np.array(_frontal(60.0))
    lead_iii = lead_ii - lead_i
    limb = [lead_i, lead_ii, lead_iii, -(lead_i + lead_ii) / 2, (lead_i - lead_iii) / 2,
            (lead_ii + lead_iii) / 2]  # fmt: skip
    precordial = [_horizontal(a, 1.15) for a in (120.0, 95.0, 75.0, 60.0, 30.0, 0.0)]
    return np.vstack([*limb, *precordial])


_LEAD_VECTORS = _lead_vectors()
_MAX_PERSON_DRAWS = 1000
#: Leads recorded independently; the other four limb leads are derived from I and II.
_INDEPENDENT = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")


def _derivation_matrix() -> np.ndarray:
    """(12, 8) matrix mapping the independent leads to all 12 (Einthoven/Goldberger)."""
    matrix = np.zeros((len(PTBXL_LEADS), len(_INDEPENDENT)))
    limb = {"I": (1.0, 0.0), "II": (0.0, 1.0), "III": (-1.0, 1.0), "AVR": (-0.5, -0.5),
            "AVL": (1.0, -0.5), "AVF": (-0.5, 1.0)}  # fmt: skip
    for row, name in enumerate(PTBXL_LEADS):
        if name in limb:
            matrix[row, :2] = limb[name]
        else:
            matrix[row, _INDEPENDENT.index(name)] = 1.0
    return matrix


_DERIVE_LEADS = _derivation_matrix()


def ptbxl_stem(ecg_id: int) -> str:
    """``"01000/01234"`` for ecg_id 1234: PTB-XL's folder (thousands) and zero-padded file stem."""
    return f"{ecg_id // 1000 * 1000:05d}/{ecg_id:05d}"


@dataclass(frozen=True)
class _Person:
    """The stable part of one synthetic heart: what makes the person recognisable."""

    dipoles: np.ndarray  # (5, 3) mV, one per wave P, Q, R, S, T
    offsets_s: np.ndarray  # (5,) wave centre relative to the R-peak at RR = 1 s
    widths_s: np.ndarray  # (5,) Gaussian widths at RR = 1 s
    lead_gains: np.ndarray  # (12,) electrode/torso gain per lead (1 for limb leads)
    resting_hr: float  # bpm


@dataclass(frozen=True)
class _Entry:
    """One record of the cohort table."""

    ecg_id: int
    person: int
    session: int
    recorded: datetime

    @property
    def stem(self) -> str:
        return ptbxl_stem(self.ecg_id)


def _rotation(angles_deg: np.ndarray) -> np.ndarray:
    """Rotation matrix from three angles (degrees) about the x, y and z axes."""
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _draw_person(rng: np.random.Generator) -> _Person:
    """Draw a person whose lead I has a dominant R wave (rejection sampling, same rng stream).

    Real cohorts include vertical or right-deviated axes with a tiny lead-I QRS, but the tests and
    the demo detect R-peaks on lead I, so such hearts are redrawn (about 21% of draws).
    """
    for _ in range(_MAX_PERSON_DRAWS):
        person = _draw_candidate(rng)
        if _lead_i_r_dominant(person):
            return person
    raise RuntimeError("could not draw a synthetic heart with a clear lead-I R wave")


def _lead_i_r_dominant(person: _Person) -> bool:
    """Lead I R (mV) is at least 0.35, twice |Q| and |S|, and 1.5 times |P| and |T|."""
    p, q, r, s, t = _LEAD_VECTORS[0] @ person.dipoles.T
    return bool(r >= 0.35 and r >= 2 * max(abs(q), abs(s)) and r >= 1.5 * max(abs(p), abs(t)))


def _draw_candidate(rng: np.random.Generator) -> _Person:
    """Draw a person: large enough differences to be separable, small enough to look like an ECG."""
    axis = np.clip(rng.normal(0.0, [10.0, 15.0, 18.0]), -35.0, 35.0)  # about x, y, z
    directions = _BASE_DIPOLES @ _rotation(axis).T
    norms = np.linalg.norm(directions, axis=1, keepdims=True)
    jitter = directions + rng.normal(0.0, 0.2, size=directions.shape) * norms
    jitter *= norms / np.linalg.norm(jitter, axis=1, keepdims=True)
    sizes = np.exp(np.clip(rng.normal(0.0, 1.0, size=5), -2.0, 2.0) * _SIZE_LOG_SD)
    offsets = _BASE_OFFSET_S + rng.normal(0.0, _OFFSET_SD_S)
    widths = _BASE_WIDTH_S * np.exp(rng.normal(0.0, _WIDTH_LOG_SD))
    gains = np.ones(len(PTBXL_LEADS))
    gains[6:] = np.exp(np.clip(rng.normal(0.0, 0.1, size=6), -0.2, 0.2))
    return _Person(
        dipoles=jitter * sizes[:, None],
        offsets_s=offsets,
        widths_s=widths,
        lead_gains=gains,
        resting_hr=float(rng.uniform(60.0, 85.0)),
    )


def _beat_times(
    rng: np.random.Generator, mean_hr: float, duration_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """R-peak times (s) and preceding RR intervals covering [-1 s, duration + 1 s].

    HRV: LF (Mayer wave, ~0.1 Hz) and HF (respiratory, 0.15-0.35 Hz) sinusoidal RR modulation plus
    white jitter, the two spectral peaks ECGSYN's RR process models. Beats start at a random phase
    so records do not all begin on the same part of the cycle.
    """
    rr_mean = 60.0 / mean_hr
    f_lf, f_hf = rng.uniform(0.08, 0.12), rng.uniform(0.15, 0.35)
    a_lf, a_hf = rng.uniform(0.01, 0.04, size=2)
    phase = rng.uniform(0.0, 2 * np.pi, size=2)
    times, rrs = [], []
    t = -1.0 - rng.uniform(0.0, rr_mean)
    rr = rr_mean
    while t < duration_s + 1.0:
        times.append(t)
        rrs.append(rr)
        modulation = a_lf * np.sin(2 * np.pi * f_lf * t + phase[0])
        modulation += a_hf * np.sin(2 * np.pi * f_hf * t + phase[1])
        rr = rr_mean * (1.0 + modulation + rng.normal(0.0, 0.01))
        t += rr
    return np.array(times), np.array(rrs)


def _wave_activations(
    t: np.ndarray, beats: np.ndarray, rrs: np.ndarray, beat_scale: np.ndarray, person: _Person
) -> np.ndarray:
    """(5, samples) sum over beats of each wave's Gaussian bump (peak 1 times the beat's scale)."""
    stretch = rrs[:, None] ** _RR_EXPONENT[None, :]  # (beats, 5)
    centres = beats[:, None] + person.offsets_s[None, :] * stretch
    widths = person.widths_s[None, :] * stretch
    activations = np.zeros((5, t.size))
    for centre, width, scale in zip(centres, widths, beat_scale, strict=True):
        z = (t[None, :] - centre[:, None]) / width[:, None]
        activations += scale * np.exp(-0.5 * z * z)
    return activations


def _simulate_session(
    person: _Person, rng: np.random.Generator, duration_s: float, rate: int, n_leads: int
) -> np.ndarray:
    """One record: (samples, n_leads) float array in mV at ``rate`` Hz."""
    n = round(duration_s * rate)
    t = np.arange(n) / rate
    mean_hr = float(np.clip(person.resting_hr + rng.normal(0.0, 6.0), 55.0, 95.0))
    beats, rrs = _beat_times(rng, mean_hr, duration_s)
    resp_f, resp_phase = rng.uniform(0.15, 0.35), rng.uniform(0.0, 2 * np.pi)
    beat_scale = 1.0 + 0.04 * np.sin(2 * np.pi * resp_f * beats + resp_phase)
    activations = _wave_activations(t, beats, rrs, beat_scale, person)

    placement = _rotation(rng.normal(0.0, 3.0, size=3))
    dipoles = person.dipoles @ placement.T * rng.uniform(0.85, 1.15)
    leads = _LEAD_VECTORS[:n_leads] * person.lead_gains[:n_leads, None]
    signal = activations.T @ (leads @ dipoles.T).T  # (samples, n_leads)
    return signal + _artefacts(rng, t, n_leads)


def _artefacts(rng: np.random.Generator, t: np.ndarray, n_leads: int) -> np.ndarray:
    """Baseline wander (two slow sinusoids), white noise and 50 Hz mains, in mV, (samples, n_leads).

    Drawn for the 8 independent leads (I, II, V1..V6) and mapped to III, AVR, AVL, AVF with the
    Einthoven/Goldberger equations, so the limb leads stay consistent as in a real 12-lead ECG.
    """
    n_free = len(_INDEPENDENT)
    wander = np.zeros((t.size, n_free))
    for _ in range(2):
        amp = rng.uniform(0.01, 0.08, size=n_free)
        freq = rng.uniform(0.05, 0.5, size=n_free)
        phase = rng.uniform(0.0, 2 * np.pi, size=n_free)
        wander += amp * np.sin(2 * np.pi * t[:, None] * freq + phase)
    noise = rng.normal(0.0, rng.uniform(0.004, 0.015), size=(t.size, n_free))
    mains = rng.uniform(0.0, 0.01) * np.sin(2 * np.pi * 50.0 * t + rng.uniform(0.0, 2 * np.pi))
    independent = wander + noise + mains[:, None]
    return (independent @ _DERIVE_LEADS.T)[:, :n_leads]


def _to_adu(signal_mv: np.ndarray) -> np.ndarray:
    """mV -> int16 adu at 1000 adu/mV; -32768 is WFDB's missing-sample code, so it is avoided."""
    return np.clip(np.round(signal_mv * ADC_GAIN), -32767, 32767).astype(np.int16)


def _write_wfdb(path: Path, signal_mv: np.ndarray, rate: int) -> None:
    """Write one record like PTB-XL: format 16, gain 1000/mV, baseline 0, PTB-XL lead names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n_leads = signal_mv.shape[1]
    wfdb.wrsamp(
        path.name,
        fs=rate,
        units=["mV"] * n_leads,
        sig_name=list(PTBXL_LEADS[:n_leads]),
        d_signal=_to_adu(signal_mv),
        fmt=["16"] * n_leads,
        adc_gain=[ADC_GAIN] * n_leads,
        baseline=[0] * n_leads,
        write_dir=str(path.parent),
    )


def _record_counts(records_per_person: int | Sequence[int], n_persons: int) -> list[int]:
    if isinstance(records_per_person, int | np.integer):
        counts = [int(records_per_person)] * n_persons
    else:
        counts = [int(c) for c in records_per_person]
        if len(counts) != n_persons:
            raise ValueError(
                f"records_per_person has {len(counts)} entries but n_persons is {n_persons}"
            )
    if any(c < 1 for c in counts):
        raise ValueError("every person needs at least one record")
    return counts


def _validate(n_persons: int, duration_s: float, rate: int, n_leads: int, seed: int) -> None:
    if n_persons < 1:
        raise ValueError(f"n_persons must be >= 1, got {n_persons}")
    if not duration_s > 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s}")
    if rate < LOW_RATE:
        raise ValueError(f"rate must be >= {LOW_RATE} Hz (a 100 Hz copy is always written)")
    if not 1 <= n_leads <= len(PTBXL_LEADS):
        raise ValueError(f"n_leads must be in 1..{len(PTBXL_LEADS)}, got {n_leads}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")


def _session_dates(rng: np.random.Generator, count: int) -> list[datetime]:
    """Strictly later calendar days per session, within PTB-XL's 1984-2001 collection period."""
    gaps = 1 + rng.geometric(1 / 90, size=max(count - 1, 0))
    start = datetime(1984, 1, 1) + timedelta(days=int(rng.integers(0, 365 * 14)))
    days = np.concatenate([[0], np.cumsum(gaps)])
    seconds = rng.integers(7 * 3600, 19 * 3600, size=count)
    return [
        start + timedelta(days=int(d), seconds=int(s)) for d, s in zip(days, seconds, strict=True)
    ]


def _cohort_table(counts: list[int], rng: np.random.Generator) -> list[_Entry]:
    """All records, ecg_id in chronological order as in PTB-XL (a person's ids may interleave)."""
    dated = [
        (when, person, session)
        for person, count in enumerate(counts)
        for session, when in enumerate(_session_dates(rng, count))
    ]
    dated.sort()
    return [
        _Entry(ecg_id=i + 1, person=p, session=s, recorded=when)
        for i, (when, p, s) in enumerate(dated)
    ]


def _csv_text(entries: list[_Entry], counts: list[int], rng: np.random.Generator, rate: int) -> str:
    """``ptbxl_database.csv`` text; patient_id and age as floats like the real file."""
    n_persons = len(counts)
    patient_ids = rng.choice(np.arange(1, max(22_000, 2 * n_persons)), n_persons, replace=False)
    folds = rng.permutation(n_persons) % 10 + 1  # one fold per patient, as PTB-XL stratifies
    sexes = rng.integers(0, 2, size=n_persons)
    first_seen = {e.person: e.recorded for e in reversed(entries)}
    birth = {p: first_seen[p] - timedelta(days=int(rng.integers(18 * 365, 85 * 365)))
             for p in range(n_persons)}  # fmt: skip
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for e in entries:
        age = (e.recorded - birth[e.person]).days // 365
        writer.writerow([
            e.ecg_id, f"{float(patient_ids[e.person]):.1f}", f"{float(age):.1f}",
            int(sexes[e.person]), e.recorded.strftime("%Y-%m-%d %H:%M:%S"), int(folds[e.person]),
            f"records{LOW_RATE}/{e.stem}_lr", f"records{rate}/{e.stem}_hr",
        ])  # fmt: skip
    return out.getvalue()


def _rng(seed: int, kind: int, person: int = 0, session: int = 0) -> np.random.Generator:
    """Independent stream per (kind, person, session): a person's heart does not depend on how
    many other persons or records are generated."""
    return np.random.default_rng([seed, kind, person, session])


def write_synthetic_cohort(
    root: str | Path,
    n_persons: int = 10,
    records_per_person: int | Sequence[int] = 3,
    duration_s: float = 10.0,
    rate: int = 500,
    n_leads: int = 12,
    seed: int = 0,
) -> Path:
    """Write a synthetic cohort laid out exactly like a PTB-XL download and return ``root``.

    For tests and the demo only, never for accuracy figures (see the module docstring).

    Args:
        root: output folder (created; existing synthetic files are overwritten).
        n_persons: number of distinct persons (PTB-XL patients).
        records_per_person: records (sessions, one per recording day) per person: one int for
            everyone, or one count per person (a person with 1 record cannot be verified across
            sessions, which the pipeline must handle).
        duration_s: length of every record in seconds (PTB-XL: 10 s).
        rate: sampling rate of the high-resolution copy, written as ``records{rate}/NNNNN_hr``;
            a 100 Hz copy (anti-alias filtered with ``resample_poly``) is always written as
            ``records100/NNNNN_lr``, so both ``--rate 500`` and ``--rate 100`` work.
        n_leads: number of leads, the first ``n_leads`` of I, II, III, AVR, AVL, AVF, V1..V6.
        seed: everything is a deterministic function of the arguments: same seed, same bytes.

    Returns:
        ``root`` as a :class:`~pathlib.Path`. It holds ``records{rate}/``, ``records100/``,
        ``RECORDS`` (all record paths, low rate first) and ``ptbxl_database.csv`` with columns
        :data:`CSV_COLUMNS`. The CSV is written last, atomically, so a cohort whose generation was
        interrupted has no CSV and is not mistaken for a complete one.
    """
    counts = _record_counts(records_per_person, n_persons)
    _validate(n_persons, duration_s, rate, n_leads, seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    entries = _cohort_table(counts, _rng(seed, 0))
    persons = [_draw_person(_rng(seed, 1, p)) for p in range(n_persons)]
    n_low = round(duration_s * LOW_RATE)
    for e in entries:
        signal = _simulate_session(
            persons[e.person], _rng(seed, 2, e.person, e.session), duration_s, rate, n_leads
        )
        _write_wfdb(root / f"records{rate}" / f"{e.stem}_hr", signal, rate)
        low = resample_poly(signal, LOW_RATE, rate, axis=0)[:n_low] if rate != LOW_RATE else signal
        _write_wfdb(root / f"records{LOW_RATE}" / f"{e.stem}_lr", low, LOW_RATE)
    names = [f"records{LOW_RATE}/{e.stem}_lr" for e in entries]
    names += [f"records{rate}/{e.stem}_hr" for e in entries]
    atomic_write_text(root / "RECORDS", "".join(f"{name}\n" for name in names))
    atomic_write_text(
        root / SYNTHETIC_MARKER,
        "synthetic ECG written by ecgbio for tests and the demo: never evidence of accuracy\n",
    )
    atomic_write_text(root / "ptbxl_database.csv", _csv_text(entries, counts, _rng(seed, 3), rate))
    return root
