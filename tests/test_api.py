"""The public API: one import away, and ``import ecgbio`` does not load torch until it is needed."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_import_is_light_and_lazy_names_resolve():
    code = (
        "import sys, ecgbio; assert 'torch' not in sys.modules; "
        "assert callable(ecgbio.load_run) and callable(ecgbio.make_report); "
        "assert 'torch' in sys.modules; print(sorted(ecgbio.__all__))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Embedder" in out.stdout and "evaluate_run" in out.stdout


def test_unknown_names_are_attribute_errors():
    import ecgbio

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = ecgbio.nope
