"""The few ``scipy.signal`` (and ``scipy.ndimage``) routines the beats path runs, in numpy only.

Why: importing ``scipy.signal`` imports ``scipy.stats`` and more, a large share of the second a
cold ``ecgbio identify`` may take (issue #15; ``benchmarks/results/cold_cli.json``). Each function
here is a port of what scipy executes for the arguments ecgbio passes, step for step, so that the
result is scipy's to float rounding; ``tests/test_filters.py`` checks that on synthetic edge cases
and ``tests/test_neurokit_ports.py`` on real records. Where scipy's own arithmetic order can be
kept cheaply (filter design, FIR filtering, resampling, the moving average) it is kept, and the
result is bit for bit scipy's; the IIR filter runs block by block (see :func:`sosfilt`), exact but
for the order of float additions.

Ported from scipy 1.17 (``signal/_filter_design.py``: ``butter``, ``zpk2sos``;
``signal/_signaltools.py``: ``sosfiltfilt``, ``sosfilt_zi``, ``lfilter_zi``, ``filtfilt``,
``resample_poly``; ``signal/_upfirdn_apply.pyx``; ``signal/_fir_filter_design.py``: ``firwin``;
``signal/windows``: ``kaiser``; ``ndimage``: ``uniform_filter1d``). scipy is BSD-3-Clause licensed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import numpy as np

_BANDS = {
    "lowpass": "lowpass",
    "low": "lowpass",
    "lp": "lowpass",
    "highpass": "highpass",
    "high": "highpass",
    "hp": "highpass",
    "bandpass": "bandpass",
    "band": "bandpass",
    "bp": "bandpass",
}

_reference = False


@contextmanager
def reference_implementations() -> Iterator[None]:
    """Inside this block, the callers of the ports (:func:`ecgbio.beats.clean`,
    :func:`ecgbio.beats.detect_rpeaks`, :func:`ecgbio.records.resample`, the EDF/CSV reader's
    resampling) run scipy and neurokit2 instead: the reference the equivalence tests compare
    against. Not thread-safe; for tests and benchmarks only."""
    global _reference
    before, _reference = _reference, True
    try:
        yield
    finally:
        _reference = before


def using_reference() -> bool:
    """True inside :func:`reference_implementations`."""
    return _reference


# Butterworth design ---------------------------------------------------------------------------
def butter_sos(
    order: int, cutoff: float | tuple[float, float], btype: str, fs: float
) -> np.ndarray:
    """Second-order sections of a digital Butterworth filter: ``scipy.signal.butter(order, cutoff,
    btype, output="sos", fs=fs)``, bit for bit (the same numpy operations in the same order).

    Args:
        order: filter order.
        cutoff: cutoff frequency in Hz (two for ``bandpass``).
        btype: ``lowpass``, ``highpass`` or ``bandpass``.
        fs: sampling rate in Hz.
    """
    wn = np.asarray(cutoff, dtype=np.float64)
    fs = float(fs)
    wn = wn / (fs / 2)
    if np.any(wn <= 0):
        raise ValueError("filter critical frequencies must be greater than 0")
    if wn.size > 1 and not wn[0] < wn[1]:
        raise ValueError("Wn[0] must be less than Wn[1]")
    if btype not in _BANDS:
        raise ValueError(f"'{btype}' is an invalid bandtype for filter.")
    band = _BANDS[btype]
    if abs(int(order)) != order:
        raise ValueError("Filter order must be a nonnegative integer")
    # analog lowpass prototype (buttap)
    z = np.asarray([], dtype=np.float64)
    m = np.arange(-order + 1, order, 2, dtype=np.float64)
    p = -np.exp(1j * np.pi * m / (2 * order))
    k = 1.0
    if np.any(wn <= 0) or np.any(wn >= 1):
        raise ValueError(
            f"Digital filter critical frequencies must be 0 < Wn < fs/2 (fs={fs} -> fs/2={fs / 2})"
        )
    bilinear_fs = 2.0
    warped = 2 * bilinear_fs * np.tan(np.pi * wn / bilinear_fs)
    if band in ("lowpass", "highpass"):
        if wn.size != 1:
            raise ValueError(
                "Must specify a single critical frequency Wn for lowpass or highpass filter"
            )
        wo = float(warped)
        degree = p.shape[0] - z.shape[0]
        if band == "lowpass":
            z, p, k = wo * z, wo * p, k * wo**degree
        else:
            z_hp, p_hp = wo / z, wo / p
            z_hp = np.concatenate((z_hp, np.zeros(degree)))
            k = k * np.real(np.prod(-z) / np.prod(-p))
            z, p = z_hp, p_hp
    else:
        if wn.size != 2:
            raise ValueError("Wn must specify start and stop frequencies for bandpass filter")
        bw = float(warped[1] - warped[0])
        wo = float(np.sqrt(warped[0] * warped[1]))
        degree = p.shape[0] - z.shape[0]
        z_lp = (z * bw / 2).astype(np.complex128)
        p_lp = (p * bw / 2).astype(np.complex128)
        z_bp = np.concatenate((z_lp + np.sqrt(z_lp**2 - wo**2), z_lp - np.sqrt(z_lp**2 - wo**2)))
        p = np.concatenate((p_lp + np.sqrt(p_lp**2 - wo**2), p_lp - np.sqrt(p_lp**2 - wo**2)))
        z = np.concatenate((z_bp, np.zeros(degree)))
        k = k * bw**degree
    # bilinear_zpk
    degree = p.shape[0] - z.shape[0]
    fs2 = 2.0 * bilinear_fs
    z_z = (fs2 + z) / (fs2 - z)
    p_z = (fs2 + p) / (fs2 - p)
    z_z = np.concatenate((z_z, -np.ones(degree)))
    k_z = k * np.real(np.prod(fs2 - z) / np.prod(fs2 - p))
    return _zpk2sos(z_z, p_z, k_z)


def _poly(zeros: np.ndarray) -> np.ndarray:
    """scipy's ``_polyutils.poly``: polynomial coefficients from roots, by repeated convolution."""
    zeros = np.atleast_1d(np.asarray(zeros))
    if zeros.shape[0] == 0:
        return np.asarray(1.0, dtype=np.real(zeros).dtype)
    a = np.ones((1,), dtype=zeros.dtype)
    one = np.ones_like(zeros[0])
    for zero in zeros:
        a = np.convolve(a, np.stack((one, -zero)), mode="full")
    if np.iscomplexobj(a):
        roots = np.asarray(zeros, dtype=np.complex128)
        if np.all(np.sort(np.imag(roots)) == np.sort(np.imag(np.conj(roots)))):
            a = np.asarray(np.real(a)).copy()
    return a


def _zpk2tf(z: list | np.ndarray, p: list | np.ndarray, k: float) -> tuple[np.ndarray, np.ndarray]:
    z, p = np.asarray(z), np.asarray(p)
    k_arr = np.asarray(k, dtype=np.result_type(np.real(z), np.real(p), k))
    if np.issubdtype(k_arr.dtype, np.integer):
        k_arr = k_arr.astype(np.float64)
    z = np.atleast_1d(z)
    k_arr = np.atleast_1d(k_arr)
    b = np.multiply(k_arr, _poly(z))
    a = np.atleast_1d(np.asarray(_poly(p)))
    return b, a


def _single_zpksos(z: list, p: list, k: float) -> np.ndarray:
    sos = np.zeros(6)
    b, a = _zpk2tf(z, p, k)
    sos[3 - len(b) : 3] = b
    sos[6 - len(a) : 6] = a
    return sos


def _cplxreal(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scipy's ``_cplxreal``: one of each complex-conjugate pair, and the real values, sorted."""
    z = np.atleast_1d(z)
    if z.size == 0:
        return z, z
    tol = 100 * np.finfo((1.0 * z).dtype).eps
    z = z[np.lexsort((abs(z.imag), z.real))]
    real_indices = abs(z.imag) <= tol * abs(z)
    zr = z[real_indices].real
    if len(zr) == len(z):
        return np.array([]), zr
    z = z[~real_indices]
    zp = z[z.imag > 0]
    zn = z[z.imag < 0]
    if len(zp) != len(zn):
        raise ValueError("Array contains complex value with no matching conjugate.")
    same_real = np.diff(zp.real) <= tol * abs(zp[:-1])
    diffs = np.diff(np.concatenate(([0], same_real, [0])))
    run_starts = np.nonzero(diffs > 0)[0]
    run_stops = np.nonzero(diffs < 0)[0]
    for i in range(len(run_starts)):
        start = run_starts[i]
        stop = run_stops[i] + 1
        for chunk in (zp[start:stop], zn[start:stop]):
            chunk[...] = chunk[np.lexsort([abs(chunk.imag)])]
    if any(abs(zp - zn.conj()) > tol * abs(zn)):
        raise ValueError("Array contains complex value with no matching conjugate.")
    zc = (zp + zn.conj()) / 2
    return zc, zr


def _nearest_real_complex_idx(fro: np.ndarray, to: complex, which: str) -> int:
    order = np.argsort(np.abs(fro - to))
    if which == "any":
        return int(order[0])
    mask = np.isreal(fro[order])
    if which == "complex":
        mask = ~mask
    return int(order[np.nonzero(mask)[0][0]])


def _zpk2sos(z: np.ndarray, p: np.ndarray, k: float) -> np.ndarray:
    """scipy's ``zpk2sos`` for a digital filter with the default ``nearest`` pairing."""
    z, p = np.asarray(z), np.asarray(p)
    k = np.asarray(k)
    if len(z) == len(p) == 0:
        return np.asarray([[k, 0.0, 0.0, 1.0, 0.0, 0.0]])
    p = np.concatenate((p, np.zeros(max(len(z) - len(p), 0))))
    z = np.concatenate((z, np.zeros(max(len(p) - len(z), 0))))
    n_sections = (max(len(p), len(z)) + 1) // 2
    if len(p) % 2 == 1:
        p = np.concatenate((p, [0.0]))
        z = np.concatenate((z, [0.0]))
    z = np.concatenate(_cplxreal(z))
    p = np.concatenate(_cplxreal(p))
    if not np.isreal(k):
        raise ValueError("k must be real")
    k = k.real

    def idx_worst(p: np.ndarray) -> int:  # digital: the pole closest to the unit circle
        return int(np.argmin(np.abs(1 - np.abs(p))))

    sos = np.zeros((n_sections, 6))
    for si in range(n_sections - 1, -1, -1):
        p1_idx = idx_worst(p)
        p1 = p[p1_idx]
        p = np.delete(p, p1_idx)
        if np.isreal(p1) and np.isreal(p).sum() == 0:
            z1_idx = _nearest_real_complex_idx(z, p1, "real")
            z1 = z[z1_idx]
            z = np.delete(z, z1_idx)
            sos[si] = _single_zpksos([z1, 0], [p1, 0], 1)
        elif (
            len(p) + 1 == len(z)
            and not np.isreal(p1)
            and np.isreal(p).sum() == 1
            and np.isreal(z).sum() == 1
        ):
            z1_idx = _nearest_real_complex_idx(z, p1, "complex")
            z1 = z[z1_idx]
            z = np.delete(z, z1_idx)
            sos[si] = _single_zpksos([z1, z1.conj()], [p1, p1.conj()], 1)
        else:
            if np.isreal(p1):
                prealidx = np.flatnonzero(np.isreal(p))
                p2_idx = prealidx[idx_worst(p[prealidx])]
                p2 = p[p2_idx]
                p = np.delete(p, p2_idx)
            else:
                p2 = p1.conj()
            if len(z) > 0:
                z1_idx = _nearest_real_complex_idx(z, p1, "any")
                z1 = z[z1_idx]
                z = np.delete(z, z1_idx)
                if not np.isreal(z1):
                    sos[si] = _single_zpksos([z1, z1.conj()], [p1, p2], 1)
                elif len(z) > 0:
                    z2_idx = _nearest_real_complex_idx(z, p1, "real")
                    z2 = z[z2_idx]
                    z = np.delete(z, z2_idx)
                    sos[si] = _single_zpksos([z1, z2], [p1, p2], 1)
                else:
                    sos[si] = _single_zpksos([z1], [p1, p2], 1)
            else:
                sos[si] = _single_zpksos([], [p1, p2], 1)
    sos[0][:3] *= k
    return sos


# Initial conditions ---------------------------------------------------------------------------
def lfilter_zi(b: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``scipy.signal.lfilter_zi``: the state for which the step response is at steady state."""
    b = np.atleast_1d(np.asarray(b, dtype=np.float64))
    a = np.atleast_1d(np.asarray(a, dtype=np.float64))
    while a.shape[0] > 1 and a[0] == 0.0:
        a = a[1:]
    if a.size < 1:
        raise ValueError("There must be at least one nonzero `a` coefficient.")
    if a[0] != 1.0:
        b = b / a[0]
        a = a / a[0]
    n = max(a.shape[0], b.shape[0])
    if a.shape[0] < n:
        a = np.concatenate((a, np.zeros(n - a.shape[0], dtype=a.dtype)))
    elif b.shape[0] < n:
        b = np.concatenate((b, np.zeros(n - b.shape[0], dtype=b.dtype)))
    if n < 2:  # scipy.linalg.companion refuses a polynomial of degree 0
        raise ValueError("The length of `a` along the last axis must be at least 2.")
    companion = np.zeros((n - 1, n - 1), dtype=np.float64)
    companion[0, :] = -a[1:] / (1.0 * a[0:1])
    companion[np.arange(1, n - 1), np.arange(0, n - 2)] = 1
    i_minus_a = np.eye(n - 1) - companion.T
    rhs = b[1:] - a[1:] * b[0]
    return np.linalg.solve(i_minus_a, rhs)


def sosfilt_zi(sos: np.ndarray) -> np.ndarray:
    """``scipy.signal.sosfilt_zi``: (sections, 2) steady-state initial conditions."""
    sos = np.asarray(sos, dtype=np.float64)
    if sos.ndim != 2 or sos.shape[1] != 6:
        raise ValueError("sos must be shape (n_sections, 6)")
    zi = np.empty((sos.shape[0], 2))
    scale = 1.0
    for section in range(sos.shape[0]):
        b, a = sos[section, :3], sos[section, 3:]
        zi[section, ...] = scale * lfilter_zi(b, a)
        scale *= np.sum(b) / np.sum(a)
    return zi


# IIR filtering (second-order sections) --------------------------------------------------------
#: Samples per block of :func:`sosfilt`: the Toeplitz product costs ``BLOCK`` multiply-adds a
#: sample.
BLOCK = 64
#: Blocks per group: within a group the blocks' starting states come from one matrix product;
#: from group to group they are carried by one small Python step.
GROUP = 16
#: Samples (all leads together) filtered at a time: temporaries of at most 128 KiB, which the
#: allocator recycles from chunk to chunk, instead of record-sized ones mapped afresh for every
#: product (on a 2-core VM the page faults cost more than the arithmetic).
CHUNK = 16384


@lru_cache(maxsize=64)
def _cascade_operators(sos_bytes: bytes, block: int, group: int) -> dict[str, np.ndarray]:
    """Block and group operators of a cascade of second-order sections, found by running
    scipy's per-sample recursion (``_sosfilt``) on probes.

    With ``s`` the cascade's state (scipy's ``zi``, flattened) at a block's start and ``u`` the
    block's inputs, the block's outputs are ``u @ toeplitz_t + s @ from_state_t`` and the state
    after it ``u @ to_state_t + s @ powers[1].T``; ``powers[j]`` carries a state across ``j``
    input-free blocks, ``local_t`` and ``group_to_state_t`` do for the blocks of a group what
    ``toeplitz_t`` and ``to_state_t`` do for the samples of a block. The powers are simulated
    sample by sample, not multiplied out: a low cutoff puts the poles near 1, the state map is
    then far from normal (its powers grow a hundredfold before they decay), and repeated matrix
    products (of the block map, or of the one-sample map) lost 10-30 times more precision than
    the per-section recursion in our tests.
    """
    sos = np.frombuffer(sos_bytes, dtype=np.float64).reshape(-1, 6)
    n_sections = sos.shape[0]
    n_state = 2 * n_sections
    # probe 0: a unit impulse from rest; probe 1 + i: no input, from the unit state e_i
    state = np.zeros((n_sections, 2, 1 + n_state))
    state.reshape(n_state, 1 + n_state)[np.arange(n_state), 1 + np.arange(n_state)] = 1.0
    h = np.empty(block)
    impulse_states = np.empty((block, n_state))
    from_state = np.empty((block, n_state))
    powers = np.empty((group + 1, n_state, n_state))
    powers[0] = np.eye(n_state)
    coefs = [tuple(float(v) for v in row) for row in sos]
    for n in range(group * block):
        cur = np.zeros(1 + n_state)
        cur[0] = 1.0 if n == 0 else 0.0
        for s, (b0, b1, b2, _, a1, a2) in enumerate(coefs):
            z = state[s]
            new = b0 * cur + z[0]
            z[0] = b1 * cur - a1 * new + z[1]
            z[1] = b2 * cur - a2 * new
            cur = new
        if n < block:
            h[n] = cur[0]
            impulse_states[n] = state[:, :, 0].reshape(-1)
            from_state[n] = cur[1:]
        if (n + 1) % block == 0:
            powers[(n + 1) // block] = state[:, :, 1:].reshape(n_state, n_state)
    idx = np.arange(block)
    lag = idx[:, None] - idx[None, :]
    toeplitz = np.where(lag >= 0, h[np.clip(lag, 0, None)], 0.0)
    # an impulse at sample m leaves the state A^(block-1-m) B at the block's end
    to_state_t = impulse_states[::-1]
    # blocks of a group: the state at block j is P^j s + sum over i < j of P^(j-1-i) f[i]
    j = np.arange(group)
    lag = j[:, None] - 1 - j[None, :]
    local = np.where((lag >= 0)[:, :, None, None], powers[np.clip(lag, 0, None)], 0.0)
    local = local.transpose(0, 2, 1, 3).reshape(group * n_state, group * n_state)
    group_to_state = powers[group - 1 - j].transpose(1, 0, 2).reshape(n_state, group * n_state)
    ops = {
        "toeplitz_t": toeplitz.T,
        "from_state_t": from_state.T,
        "to_state_t": to_state_t,
        "powers": powers,
        "local_t": local.T,
        "group_to_state_t": group_to_state.T,
    }
    return {k: np.ascontiguousarray(v) for k, v in ops.items()}


def sosfilt(
    sos: np.ndarray, x: np.ndarray, zi: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """``scipy.signal.sosfilt(sos, x, zi=zi)[0]`` along the last axis of a 1-D or 2-D ``x``.

    scipy runs a per-sample recursion in C; a Python loop over a long record would take seconds.
    Here the signal is cut into blocks of :data:`BLOCK` samples. A block's output is its
    zero-state response (a product with the cascade's impulse response as a lower-triangular
    Toeplitz matrix) plus the zero-input response of the state at its start; those states come
    from what each block's input adds to the state, carried from block to block by matrix
    products within a group of :data:`GROUP` blocks and by one Python step from group to group.
    It is the same linear map as scipy's, summed in another order: the difference is float
    rounding, at most ~1e-11 of the signal's largest magnitude (random walks at 100-2000 Hz;
    < 1e-12 on real records: tests/test_filters.py, tests/test_neurokit_ports.py).

    Args:
        sos: (sections, 6) second-order sections, ``sos[:, 3] == 1``.
        x: (samples,) or (leads, samples).
        zi: (sections, 2) initial states, or (leads, sections, 2) (scipy puts the sections
            first: ``(sections, leads, 2)``).
        out: float64 array shaped like ``x`` for the result; it may be ``x`` itself (each chunk
            is copied out before its output is written), which spares a record-sized allocation.
    """
    sos = np.ascontiguousarray(sos, dtype=np.float64)
    n_state = 2 * sos.shape[0]
    x2 = np.atleast_2d(x)
    leads, n = x2.shape
    ops = _cascade_operators(sos.tobytes(), BLOCK, GROUP)
    span = BLOCK * GROUP
    chunk = max(1, CHUNK // (leads * span)) * span
    state = np.broadcast_to(np.asarray(zi, dtype=np.float64), (leads, sos.shape[0], 2))
    state = state.reshape(leads, n_state)
    group_map_t = ops["powers"][GROUP].T
    # state (leads, n_state) @ powers_t -> (leads, GROUP * n_state): P^j s for every block j
    powers_t = ops["powers"][:GROUP].transpose(2, 0, 1).reshape(n_state, GROUP * n_state)
    result = np.empty(x2.shape) if out is None else out
    out2 = np.atleast_2d(result)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        n_groups = -(-m // span)
        buf = np.zeros((leads, n_groups * span))
        buf[:, :m] = x2[:, start : start + m]
        blocks = buf.reshape(leads * n_groups * GROUP, BLOCK)
        forced = (blocks @ ops["to_state_t"]).reshape(leads, n_groups, GROUP * n_state)
        group_forced = forced @ ops["group_to_state_t"]  # (leads, groups, n_state)
        starts = (forced @ ops["local_t"]).reshape(leads, n_groups, GROUP, n_state)
        for g in range(n_groups):
            starts[:, g] += (state @ powers_t).reshape(leads, GROUP, n_state)
            state = state @ group_map_t + group_forced[:, g]
        y = blocks @ ops["toeplitz_t"]
        y += starts.reshape(-1, n_state) @ ops["from_state_t"]
        out2[:, start : start + m] = y.reshape(leads, n_groups * span)[:, :m]
    return result.reshape(x.shape)


def _as_float(x: np.ndarray) -> np.ndarray:
    """``x`` as an array, floats kept in their own precision: scipy pads a float32 signal in
    float32 arithmetic before it filters in float64, and so must the port."""
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)


def _odd_ext(x: np.ndarray, n: int) -> np.ndarray:
    """scipy's ``odd_ext`` on the last axis: point-reflect ``n`` samples about each end."""
    if n < 1:
        return x
    left_end, right_end = x[..., :1], x[..., -1:]
    left_ext = x[..., n:0:-1]
    right_ext = x[..., -2 : -(n + 2) : -1]
    return np.concatenate((2 * left_end - left_ext, x, 2 * right_end - right_ext), axis=-1)


def sosfiltfilt(sos: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``scipy.signal.sosfiltfilt(sos, x)`` (odd padding, default pad length) along the last axis:
    forward and backward through :func:`sosfilt`, with scipy's padding and initial conditions.

    Raises:
        ValueError: ``x`` is not longer than the pad length (scipy's message).
    """
    sos = np.asarray(sos, dtype=np.float64)
    if sos.ndim != 2 or sos.shape[1] != 6:
        raise ValueError("sos array must be shape (n_sections, 6)")
    if not np.all(sos[:, 3] == 1):
        raise ValueError("sos[:, 3] should be all ones")
    x = _as_float(x)
    if x.ndim == 0:
        raise ValueError("x must be at least 1-D")
    n_sections = sos.shape[0]
    ntaps = 2 * n_sections + 1
    ntaps -= min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
    edge = ntaps * 3
    if x.shape[-1] <= edge:
        raise ValueError(
            f"The length of the input vector x must be greater than padlen, which is {edge}."
        )
    ext = _odd_ext(x, edge)  # in x's precision, as scipy pads
    zi = sosfilt_zi(sos)  # (sections, 2)
    x_0 = ext[..., 0][..., None, None]
    ext = ext.astype(np.float64, copy=False)
    sosfilt(sos, ext, zi * x_0, out=ext)  # forward, in place
    y_0 = ext[..., -1][..., None, None]
    backward = ext[..., ::-1]
    sosfilt(sos, backward, zi * y_0, out=backward)  # backward, in place
    return ext[..., edge:-edge]


# FIR filtering ---------------------------------------------------------------------------------
def fir_filtfilt(b: np.ndarray, a0: float, x: np.ndarray) -> np.ndarray:
    """``scipy.signal.filtfilt(b, [a0], x, method="pad")`` along the last axis, bit for bit.

    With a one-coefficient denominator scipy's ``lfilter`` is ``np.convolve`` plus the initial
    state on the first samples, so this is the same arithmetic.
    """
    b = np.atleast_1d(np.asarray(b, dtype=np.float64))
    a = np.atleast_1d(np.asarray([a0], dtype=np.float64))
    x = _as_float(x)
    edge = 3 * max(len(a), len(b))
    if x.shape[-1] <= edge:
        raise ValueError(
            f"The length of the input vector x must be greater than padlen, which is {edge}."
        )
    ext = _odd_ext(x, edge)
    zi = lfilter_zi(b, a)
    y = _fir_lfilter(b, a, ext, zi * ext[..., :1])
    y = _fir_lfilter(b, a, y[..., ::-1], zi * y[..., -1:])
    y = y[..., ::-1]
    if edge > 0:
        y = y[..., edge:-edge]
    return np.ascontiguousarray(y)


def _fir_lfilter(b: np.ndarray, a: np.ndarray, x: np.ndarray, zi: np.ndarray) -> np.ndarray:
    """scipy's ``lfilter`` for ``len(a) == 1`` with initial state ``zi`` (last axis)."""
    b = np.array(b, dtype=np.float64)
    b /= a[0]
    rows = np.atleast_2d(x)
    full = np.stack([np.convolve(b, row) for row in rows])
    full[:, : zi.shape[-1]] += np.atleast_2d(zi)
    out = full[:, : full.shape[1] - len(b) + 1]
    return out[0] if x.ndim == 1 else out


# Moving average (scipy.ndimage.uniform_filter1d, mode="nearest") ------------------------------
def uniform_filter1d_nearest(x: np.ndarray, size: int) -> np.ndarray:
    """``scipy.ndimage.uniform_filter1d(x, size, mode="nearest")`` for a 1-D float array, bit for
    bit: ndimage keeps a running sum (``tmp += new - old``, each output ``tmp / size``),
    reproduced by a cumulative sum, which numpy adds strictly left to right."""
    x = np.asarray(x, dtype=np.float64)
    if size < 1:
        raise RuntimeError("incorrect filter size")
    n = x.shape[0]
    if n == 0:
        return x.copy()
    before = size // 2
    after = size - before - 1
    ext = np.concatenate((np.full(before, x[0]), x, np.full(after, x[-1])))
    out = np.empty(n)
    out[0] = np.cumsum(ext[:size])[-1]
    np.subtract(ext[size : size + n - 1], ext[: n - 1], out=out[1:])
    np.cumsum(out, out=out)
    out /= size
    return out


# Polyphase resampling --------------------------------------------------------------------------
_I0_A = (
    -4.41534164647933937950e-18,
    3.33079451882223809783e-17,
    -2.43127984654795469359e-16,
    1.71539128555513303061e-15,
    -1.16853328779934516808e-14,
    7.67618549860493561688e-14,
    -4.85644678311192946090e-13,
    2.95505266312963983461e-12,
    -1.72682629144155570723e-11,
    9.67580903537323691224e-11,
    -5.18979560163526290666e-10,
    2.65982372468238665035e-9,
    -1.30002500998624804212e-8,
    6.04699502254191894932e-8,
    -2.67079385394061173391e-7,
    1.11738753912010371815e-6,
    -4.41673835845875056359e-6,
    1.64484480707288970893e-5,
    -5.75419501008210370398e-5,
    1.88502885095841655729e-4,
    -5.76375574538582365885e-4,
    1.63947561694133579842e-3,
    -4.32430999505057594430e-3,
    1.05464603945949983183e-2,
    -2.37374148058994688156e-2,
    4.93052842396707084878e-2,
    -9.49010970480476444210e-2,
    1.71620901522208775349e-1,
    -3.04682672343198398683e-1,
    6.76795274409476084995e-1,
)
_I0_B = (
    -7.23318048787475395456e-18,
    -4.83050448594418207126e-18,
    4.46562142029675999901e-17,
    3.46122286769746109310e-17,
    -2.82762398051658348494e-16,
    -3.42548561967721913462e-16,
    1.77256013305652638360e-15,
    3.81168066935262242075e-15,
    -9.55484669882830764870e-15,
    -4.15056934728722208663e-14,
    1.54008621752140982691e-14,
    3.85277838274214270114e-13,
    7.18012445138366623367e-13,
    -1.79417853150680611778e-12,
    -1.32158118404477131188e-11,
    -3.14991652796324136454e-11,
    1.18891471078464383424e-11,
    4.94060238822496958910e-10,
    3.39623202570838634515e-9,
    2.26666899049817806459e-8,
    2.04891858946906374183e-7,
    2.89137052083475648297e-6,
    6.88975834691682398426e-5,
    3.36911647825569408990e-3,
    8.04490411014108831608e-1,
)


def _chbevl(x: np.ndarray, coefs: tuple[float, ...]) -> np.ndarray:
    b0 = np.full_like(x, coefs[0])
    b1 = np.zeros_like(x)
    b2 = b1
    for c in coefs[1:]:
        b2 = b1
        b1 = b0
        b0 = x * b1 - b2 + c
    return 0.5 * (b0 - b2)


def _i0(x: np.ndarray) -> np.ndarray:
    """Modified Bessel function of order 0 (Cephes, as ``scipy.special.i0``). The exponentials
    come from the C library (``math.exp``), as scipy's do; numpy's own ``exp`` can differ in the
    last bit."""
    x = np.abs(np.asarray(x, dtype=np.float64))
    exp = np.array([math.exp(v) for v in x.ravel()]).reshape(x.shape)
    small = x <= 8.0
    out = np.empty_like(x)
    out[small] = exp[small] * _chbevl(x[small] / 2.0 - 2.0, _I0_A)
    big = ~small
    xb = x[big]
    out[big] = exp[big] * _chbevl(32.0 / xb - 2.0, _I0_B) / np.sqrt(xb)
    return out


def kaiser(m: int, beta: float) -> np.ndarray:
    """``scipy.signal.windows.kaiser(m, beta)`` (symmetric)."""
    if m <= 1:
        return np.ones(m, dtype=np.float64)
    n = np.arange(0, m, dtype=np.float64)
    alpha = (m - 1) / 2.0
    return _i0(beta * np.sqrt(1 - ((n - alpha) / alpha) ** 2.0)) / _i0(
        np.asarray([beta], dtype=np.float64)
    )


def firwin_lowpass_kaiser(numtaps: int, cutoff: float, beta: float) -> np.ndarray:
    """``scipy.signal.firwin(numtaps, cutoff, window=("kaiser", beta))``: a windowed-sinc
    low-pass, ``cutoff`` relative to Nyquist, scaled to unit gain at 0 Hz."""
    cutoff_arr = np.atleast_1d(np.asarray(cutoff, dtype=np.float64)) / 1.0
    if cutoff_arr.min() <= 0 or cutoff_arr.max() >= 1:
        raise ValueError(
            "Invalid cutoff frequency: frequencies must be greater than 0 and less than fs/2."
        )
    bands = np.concatenate((np.zeros(1), cutoff_arr)).reshape(-1, 2)
    alpha = 0.5 * (numtaps - 1)
    m = np.arange(0, numtaps, dtype=np.float64) - alpha
    h: np.ndarray | int = 0
    for j in range(bands.shape[0]):
        left, right = bands[j, 0], bands[j, 1]
        h = h + right * np.sinc(right * m)
        h = h - left * np.sinc(left * m)
    h = np.asarray(h) * kaiser(numtaps, beta)
    scale_frequency = 0.0
    c = np.cos(np.pi * m * scale_frequency)
    s = np.sum(h * c)
    return h / s


@lru_cache(maxsize=32)
def _polyphase_filter(up: int, down: int, dtype: str) -> tuple[np.ndarray, int, int, int]:
    """resample_poly's filter by phase: (up, taps per phase) coefficients in the order scipy's
    ``upfirdn`` multiplies them, taps per phase, and how many outputs to drop at the start."""
    max_rate = max(up, down)
    half_len = 10 * max_rate
    h = firwin_lowpass_kaiser(2 * half_len + 1, 1.0 / max_rate, 5.0).astype(dtype)
    h *= up
    n_pre_pad = down - half_len % down
    n_pre_remove = (half_len + n_pre_pad) // down
    return h, n_pre_pad, n_pre_remove, half_len


def _upfirdn_output_len(len_h: int, in_len: int, up: int, down: int) -> int:
    return (((in_len - 1) * up + len_h) - 1) // down + 1


def resample_poly(
    x: np.ndarray, up: int, down: int, axis: int = 0, padtype: str = "constant"
) -> np.ndarray:
    """``scipy.signal.resample_poly(x, up, down, axis=axis, padtype=padtype)`` with scipy's
    default Kaiser (beta 5) anti-aliasing filter, bit for bit: every output sample is summed
    tap by tap in the order scipy's ``upfirdn`` sums it.

    Args:
        padtype: ``line`` (the line through the first and last samples continues the signal, as
            ecgbio resamples records) or ``constant`` (zeros, scipy's default).
    """
    if padtype not in ("line", "constant"):
        raise ValueError(f"padtype {padtype!r} is not ported (only 'line' and 'constant')")
    x = np.asarray(x)
    if up != int(up) or down != int(down):
        raise ValueError("up and down must be integers")
    up, down = int(up), int(down)
    if up < 1 or down < 1:
        raise ValueError("up and down must be >= 1")
    g = math.gcd(up, down)
    up //= g
    down //= g
    if up == down == 1:
        return x.copy()
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float64)
    out_dtype = np.result_type(dtype, np.float32)
    h, n_pre_pad, n_pre_remove, _ = _polyphase_filter(up, down, np.dtype(dtype).name)
    h = h.astype(out_dtype)
    xm = np.moveaxis(np.asarray(x, dtype=out_dtype), axis, -1)
    n_in = xm.shape[-1]
    if n_in == 0:  # scipy returns an empty array whatever the padding
        return np.moveaxis(np.zeros((*xm.shape[:-1], 0), out_dtype), -1, axis)
    n_out = n_in * up
    n_out = n_out // down + bool(n_out % down)
    n_post_pad = 0
    while _upfirdn_output_len(len(h) + n_pre_pad + n_post_pad, n_in, up, down) < (
        n_out + n_pre_remove
    ):
        n_post_pad += 1
    h_full = np.concatenate(
        (np.zeros(n_pre_pad, dtype=h.dtype), h, np.zeros(n_post_pad, dtype=h.dtype))
    )
    padded_len = len(h_full) + (-len(h_full) % up)
    h_pad = np.zeros(padded_len, dtype=h.dtype)
    h_pad[: len(h_full)] = h_full
    per_phase = padded_len // up
    # phases[t, i]: the coefficient scipy multiplies with x[x_idx - per_phase + 1 + i] at phase t
    phases = h_pad.reshape(-1, up).T[:, ::-1]
    # the signal with per_phase - 1 extended samples on each side, as upfirdn's modes extend it
    lead_shape = xm.shape[:-1]
    ext = np.empty((*lead_shape, n_in + 2 * (per_phase - 1)), dtype=out_dtype)
    ext[..., per_phase - 1 : per_phase - 1 + n_in] = xm
    if per_phase > 1:
        if padtype == "line":
            with np.errstate(divide="ignore", invalid="ignore"):
                slope = (xm[..., -1:] - xm[..., :1]) / out_dtype.type(n_in - 1)
            left = np.arange(-(per_phase - 1), 0).astype(out_dtype)
            right = np.arange(1, per_phase).astype(out_dtype)  # idx - len_x + 1
            ext[..., : per_phase - 1] = xm[..., :1] + left * slope
            ext[..., per_phase - 1 + n_in :] = xm[..., -1:] + right * slope
        else:
            ext[..., : per_phase - 1] = 0
            ext[..., per_phase - 1 + n_in :] = 0
    # Output k (counted from n_pre_remove) sums ext[x_idx + i] * phases[t, i] over i in order,
    # x_idx = (k * down) // up and t = (k * down) % up. The outputs of one phase are every up-th
    # one, and their x_idx step by down: each tap is one strided view of ext.
    out = np.empty((*lead_shape, n_out), dtype=out_dtype)
    for first in range(min(up, n_out)):
        k0 = n_pre_remove + first
        t, start = (k0 * down) % up, (k0 * down) // up
        count = len(range(first, n_out, up))
        acc = np.zeros((*lead_shape, count), dtype=out_dtype)
        term = np.empty_like(acc)
        stop = start + down * (count - 1) + 1
        for i in range(per_phase):
            np.multiply(ext[..., start + i : stop + i : down], phases[t, i], out=term)
            acc += term  # acc + x * h, rounded as scipy rounds it
        out[..., first::up] = acc
    return np.moveaxis(out, -1, axis)
