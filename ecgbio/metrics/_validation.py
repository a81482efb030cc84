"""Input checks shared by the metric functions: one place, one wording for bad score arrays."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ecgbio.errors import ConfigError


def finite_array(values: ArrayLike, name: str, ndim: int) -> np.ndarray:
    """A non-empty, finite float64 array with ``ndim`` dimensions, or a one-line ConfigError."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "biuf":
        raise ConfigError(f"{name} must be numbers, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ConfigError(f"{name} must be a {ndim}-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ConfigError(f"no {name}: the array is empty (shape {arr.shape})")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ConfigError(f"{name} contain {bad} NaN or infinite value(s)")
    return arr


def encode_ids(
    first: np.ndarray, second: np.ndarray, names: tuple[str, str], what: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map two arrays of ids (persons, groups) to shared integer codes.

    Returns (distinct ids, codes of ``first``, codes of ``second``). Mixing string and numeric ids
    is refused: "1" and 1 would silently be two different persons.
    """
    if (first.dtype.kind in "US") != (second.dtype.kind in "US"):
        raise ConfigError(
            f"{names[0]} and {names[1]} {what} must be ids of one kind, got dtypes "
            f"{first.dtype} and {second.dtype}"
        )
    try:
        ids, codes = np.unique(np.concatenate((first, second)), return_inverse=True)
    except TypeError as exc:
        raise ConfigError(f"{what} cannot be compared: {exc}") from None
    codes = codes.ravel()
    return ids, codes[: first.size], codes[first.size :]
