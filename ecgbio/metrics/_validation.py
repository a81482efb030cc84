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
