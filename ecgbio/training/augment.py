"""Training-time augmentation of beat batches: what changes between two sessions of one person.

Amplitude (electrode contact, skin impedance), baseline offset and slow drift (respiration,
movement), and broadband noise vary between recordings of the same heart; the morphology that
identifies a person does not. Randomising the former teaches the model to ignore them.
"""

from __future__ import annotations

import torch


def augment_beats(
    x: torch.Tensor,
    generator: torch.Generator,
    scale: float = 0.2,
    offset: float = 0.05,
    drift: float = 0.05,
    noise: float = 0.02,
) -> torch.Tensor:
    """Random per-beat gain (x U(1-scale, 1+scale)), offset, linear drift and Gaussian noise.

    ``offset``, ``drift`` and ``noise`` are relative to each beat's standard deviation, so the
    augmentation means the same on millivolt and on normalised stores.
    """
    b, leads, n = x.shape
    std = x.std(dim=-1, keepdim=True) + 1e-6

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator) * 2 - 1

    gain = 1 + scale * uniform(b, 1, 1)
    ramp = torch.linspace(-1, 1, n).view(1, 1, n)
    base = offset * uniform(b, leads, 1) + drift * uniform(b, leads, 1) * ramp
    hiss = noise * torch.randn(b, leads, n, generator=generator)
    return x * gain + (base + hiss) * std


def warp_beats(
    x: torch.Tensor,
    generator: torch.Generator,
    r_index: int,
    stretch: float = 0.0,
    shift: float = 0.0,
) -> torch.Tensor:
    """Random per-beat time stretch about the R-peak (x U(1-stretch, 1+stretch)) and shift.

    Why: between sessions the heart rate changes (and with it the QT interval and the T wave's
    place), and R-peak detection jitters by a sample or two; neither is identity. ``shift`` is in
    samples; both are linear interpolations, edges clamped.
    """
    if not stretch and not shift:
        return x
    b, leads, n = x.shape
    t = torch.arange(n, dtype=torch.float32).view(1, n)
    factor = 1 + stretch * (torch.rand(b, 1, generator=generator) * 2 - 1)
    offset = shift * (torch.rand(b, 1, generator=generator) * 2 - 1)
    pos = (r_index + (t - r_index) * factor + offset).clamp(0, n - 1)
    lo = pos.floor().long().clamp(max=n - 2)
    frac = (pos - lo).unsqueeze(1).to(x.dtype)
    lo = lo.unsqueeze(1).expand(b, leads, n)
    left, right = x.gather(2, lo), x.gather(2, lo + 1)
    return left + (right - left) * frac


def smooth_beats(
    x: torch.Tensor, generator: torch.Generator, strength: float = 0.0
) -> torch.Tensor:
    """Random per-beat 3-tap low-pass ``[a, 1 - 2a, a]`` with ``a ~ U(0, strength)``.

    Why: recorders differ in bandwidth and filtering (a hospital 12-lead cart, a handheld lead-I
    device), which softens or sharpens the QRS; that is the device, not the person.
    """
    if not strength:
        return x
    b = x.shape[0]
    a = (torch.rand(b, 1, 1, generator=generator) * strength).to(x.dtype)
    left = torch.cat([x[..., :1], x[..., :-1]], dim=-1)
    right = torch.cat([x[..., 1:], x[..., -1:]], dim=-1)
    return (1 - 2 * a) * x + a * (left + right)


def rotate_lead_axis(
    lead_i: torch.Tensor, lead_ii: torch.Tensor, generator: torch.Generator, degrees: float
) -> torch.Tensor:
    """Lead I seen from a frontal-plane axis turned by a random ``U(-degrees, degrees)`` per beat.

    Why: where the electrodes sit (wrists, fingers, a handheld device's plates), the person's
    posture and breathing turn the heart's electrical axis against lead I by tens of degrees
    between sessions; the heart stays the same. Every frontal-plane lead is a combination of
    leads I and II (Einthoven): with the heart vector's components ``Hx = I`` and
    ``Hy = (2 II - I) / sqrt(3)``, the lead at angle ``t`` reads ``I cos t + Hy sin t`` (``t = 60``
    degrees gives lead II, ``-30`` the direction of aVL). Inputs and output are
    ``(beats, 1, samples)``. A beat whose two leads are one (a database with a single limb lead
    standing in for both, as MIT-BIH's MLII) has no axis to turn and is left as it is.
    """
    if not degrees:
        return lead_i
    angle = degrees * (torch.rand(lead_i.shape[0], 1, 1, generator=generator) * 2 - 1)
    stand_in = (lead_i == lead_ii).flatten(1).all(dim=1).view(-1, 1, 1)
    angle = torch.deg2rad(torch.where(stand_in, torch.zeros_like(angle), angle))
    vertical = (2 * lead_ii - lead_i) / 3**0.5
    return lead_i * torch.cos(angle).to(lead_i.dtype) + vertical * torch.sin(angle).to(lead_i.dtype)
