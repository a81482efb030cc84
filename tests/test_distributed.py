"""Real two-process DDP training on CPU (gloo), launched by torchrun like a user would.

Why a subprocess and not a mock: what breaks under DDP is the interplay of processes (unequal step
counts deadlock the gradient all-reduce, rank-0-only validation must not leave rank 1 stuck in a
collective, rank 0 must save what both ranks trained), and only real processes show it.

"Trained in lockstep" is checked, not assumed: torchrun launches this very file as its script
(see ``_spy_main`` at the bottom), which runs the unchanged ``ecgbio`` CLI with two observers
added (:func:`_observed`): optimizer step hooks (public torch API) that record the parameters
before the first and after every step, and a wrapper around the training loop's batch fetcher that
records which beats each step used. The same command run once more without torchrun (in this
process, observed the same way) is the reference. The test then requires identical parameters on
both ranks after every step, the reference's initial weights (same seed), and that the ranks'
batches interleave to exactly the reference's batch sequence (each rank takes every 2nd batch of
the same seeded sequence).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SPY_ENV = "ECGBIO_TEST_DDP_SPY"  # folder where each rank of a spied run writes what it saw
EPOCHS = 2
WORLD = 2
MODEL_ARGS = ["--widths", "8,16", "--blocks", "1,1", "--embedding-dim", "16"]
TIMEOUT_S = 180
DDP_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")

pytestmark = pytest.mark.slow


@dataclass
class Run:
    """One finished training command: its outcome, run directory and what each rank recorded."""

    rc: int
    stdout: str
    stderr: str
    out: Path
    ranks: dict[str, dict[str, Any]]

    def explain(self) -> str:
        return (
            f"exit {self.rc}\n--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-6000:]}"
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli_args(store: Path, out: Path, batch_size: int, extra: tuple[str, ...] = ()) -> list[str]:
    args = ["train", "--store", str(store), "--out", str(out), "--protocol", "cross-session"]
    args += ["--epochs", str(EPOCHS), *MODEL_ARGS, "--batch-size", str(batch_size)]
    return [*args, "--threads", "1", "-q", *extra]


def _train_ddp(store: Path, work: Path, batch_size: int, extra: tuple[str, ...] = ()) -> Run:
    """``ecgbio train`` under torchrun with 2 processes (gloo), each observed by ``_spy_main``."""
    out, spy = work / "run", work / "spy"
    spy.mkdir(parents=True)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD)]
    launcher += ["--master_port", str(_free_port())]
    env = {k: v for k, v in os.environ.items() if k not in DDP_ENV}
    # this tree's ecgbio even where the venv's editable install points at another checkout
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), **{SPY_ENV: str(spy)})
    proc = subprocess.Popen(
        [*launcher, str(Path(__file__).resolve()), *_cli_args(store, out, batch_size, extra)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a hung run is killed with its workers, never left behind
    )
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        stderr += f"\n[test] killed after {TIMEOUT_S} s (deadlock?)"
    ranks = {p.stem: torch.load(p, weights_only=True) for p in sorted(spy.glob("*.pt"))}
    return Run(proc.returncode, stdout, stderr, out, ranks)


def _train_single(store: Path, work: Path, batch_size: int) -> Run:
    """The same ``ecgbio train`` command in this process (no torchrun): the reference run.

    In-process because a third interpreter start (torch, scipy, pml imports) costs more than the
    training itself; torch's thread count and random state are put back afterwards.
    """
    from pytorch_metric_learning.utils import common_functions as pml_common
    from typer.testing import CliRunner

    from ecgbio.cli import app

    out = work / "run"
    threads, numpy_random = torch.get_num_threads(), pml_common.NUMPY_RANDOM
    env = {k: None for k in DDP_ENV}
    try:
        with torch.random.fork_rng(), _observed() as seen:
            result = CliRunner().invoke(app, _cli_args(store, out, batch_size), env=env)
    finally:
        torch.set_num_threads(threads)
        pml_common.NUMPY_RANDOM = numpy_random
    error = result.exception
    crash = error is not None and not isinstance(error, SystemExit)
    trace = "".join(traceback.format_exception(error)) if crash else ""
    return Run(result.exit_code, result.stdout, result.stderr + trace, out, {"rank0": seen})


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 persons x 2 sessions at 100 Hz: 59 training beats under cross-session (seconds to make)."""
    from ecgbio.config import BeatConfig
    from ecgbio.prepare import prepare_store
    from ecgbio.sources.ptbxl import ptbxl_records
    from ecgbio.sources.synthetic import write_synthetic_cohort

    tmp = tmp_path_factory.mktemp("ddp")
    root = write_synthetic_cohort(
        tmp / "cohort",
        n_persons=8,
        records_per_person=2,
        duration_s=8,
        rate=500,
        n_leads=1,
        seed=0,
    )
    prepare_store(
        ptbxl_records(root, rate=100), tmp / "store", BeatConfig(rate=100), progress=False
    )
    return tmp / "store"


# The command of the brief: 59 training beats / batch 16 = 3 batches per epoch, which 2 ranks cannot
# share evenly: each takes one and the third is dropped (equal step counts, or the all-reduce hangs).
@pytest.fixture(scope="module")
def ddp_run(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _train_ddp(store, tmp_path_factory.mktemp("ddp"), batch_size=16)


@pytest.fixture(scope="module")
def single_run(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _train_single(store, tmp_path_factory.mktemp("single"), batch_size=16)


def _history(out: Path) -> list[dict[str, str]]:
    with open(out / "history.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _assert_lockstep(ddp: Run, single: Run) -> None:
    """Both ranks took the same number of steps, had identical weights after every one of them,
    started from the single-process run's initial weights and split its batch sequence."""
    assert sorted(ddp.ranks) == ["rank0", "rank1"], ddp.explain()
    r0, r1 = ddp.ranks["rank0"], ddp.ranks["rank1"]
    assert len(r0["params"]) == len(r1["params"]) > 0
    assert torch.equal(r0["initial"], r1["initial"])
    for step, (a, b) in enumerate(zip(r0["params"], r1["params"], strict=True)):
        assert torch.equal(a, b), f"ranks diverged at step {step}"
    final = r0["params"][-1]
    assert torch.isfinite(final).all()
    assert not torch.equal(final, r0["initial"]), "training changed nothing"
    one = single.ranks["rank0"]
    assert torch.equal(r0["initial"], one["initial"]), "same seed, same initial weights"
    per_rank = len(r0["batches"]) // EPOCHS
    per_single = len(one["batches"]) // EPOCHS
    assert len(r0["batches"]) == EPOCHS * per_rank
    assert per_rank == per_single // WORLD, "each rank takes every 2nd batch; an odd one is dropped"
    for epoch in range(EPOCHS):
        mine = slice(epoch * per_rank, (epoch + 1) * per_rank)
        pairs = zip(r0["batches"][mine], r1["batches"][mine], strict=True)
        interleaved = [batch for pair in pairs for batch in pair]
        start = epoch * per_single
        assert interleaved == one["batches"][start : start + len(interleaved)], f"epoch {epoch + 1}"


def test_ddp_training_runs_in_lockstep_and_rank0_writes_the_run(
    ddp_run: Run, single_run: Run
) -> None:
    assert ddp_run.rc == 0, ddp_run.explain()
    assert single_run.rc == 0, single_run.explain()
    for name in ("model.safetensors", "history.csv", "metrics.json", "config.json"):
        assert (ddp_run.out / name).is_file(), name
    assert [row["epoch"] for row in _history(ddp_run.out)] == ["1", "2"]
    _assert_lockstep(ddp_run, single_run)

    # rank 0 saved the weights both ranks trained: those at the end of the best epoch
    from ecgbio.config import ModelConfig
    from ecgbio.models import IdentityModel
    from ecgbio.runs import load_weights

    metrics = json.loads((ddp_run.out / "metrics.json").read_text())
    assert metrics["epochs_run"] == EPOCHS and metrics["test"], metrics
    model = IdentityModel(
        1, metrics["classes"], ModelConfig(widths=(8, 16), blocks=(1, 1), embedding_dim=16)
    )
    load_weights(ddp_run.out / "model.safetensors", model)
    saved = torch.cat([p.detach().flatten() for p in model.parameters()])
    r0 = ddp_run.ranks["rank0"]["params"]
    assert torch.equal(saved, r0[metrics["best_epoch"] * len(r0) // EPOCHS - 1])


def test_ddp_learning_rate_schedule_runs_to_its_end(ddp_run: Run, single_run: Run) -> None:
    """The schedule counts each process's own steps (1/world_size of the epoch's batches), so
    warm-up and cosine end where they do in a single process: at learning rate 0."""
    assert ddp_run.rc == 0 and single_run.rc == 0, ddp_run.explain()
    assert float(_history(single_run.out)[-1]["lr"]) == 0.0
    assert float(_history(ddp_run.out)[-1]["lr"]) == 0.0


def test_ddp_prints_one_result(ddp_run: Run) -> None:
    """Only rank 0 reports: the other ranks neither validate nor test."""
    assert ddp_run.rc == 0, ddp_run.explain()
    assert ddp_run.stdout.count("best epoch") == 1, ddp_run.stdout


def test_ddp_divergence_stops_every_rank(store: Path, tmp_path: Path) -> None:
    """A loss that turns NaN stops both processes with one line each (they agree on it in a
    collective), instead of one raising while the other waits in the next all-reduce."""
    run = _train_ddp(store, tmp_path, batch_size=16, extra=("--lr", "1e9"))
    assert run.rc != 0 and "killed after" not in run.stderr, run.explain()
    assert "training diverged in epoch 1" in run.stderr, run.explain()
    assert "unexpected" not in run.stderr and not (run.out / "model.safetensors").exists()


# --- what each training process records, and the launcher torchrun runs -------------------------
@contextmanager
def _observed() -> Iterator[dict[str, Any]]:
    """Record, while active, the parameters before the first and after every optimizer step
    (public torch hooks) and the store rows of every training batch (the loop's fetcher)."""
    from torch.optim.optimizer import (
        register_optimizer_step_post_hook,
        register_optimizer_step_pre_hook,
    )

    from ecgbio.training import loop

    seen: dict[str, Any] = {"params": [], "batches": []}

    def flat(optimizer: torch.optim.Optimizer) -> torch.Tensor:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        return torch.cat([p.detach().flatten() for p in params]).clone()

    def before(optimizer: torch.optim.Optimizer, *_: Any) -> None:
        seen.setdefault("initial", flat(optimizer))

    def after(optimizer: torch.optim.Optimizer, *_: Any) -> None:
        seen["params"].append(flat(optimizer))

    fetch = loop._Fetcher.__call__

    def spied_fetch(self: Any, idx: Any, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        seen["batches"].append([int(i) for i in idx])
        return fetch(self, idx, generator)

    hooks = [register_optimizer_step_pre_hook(before), register_optimizer_step_post_hook(after)]
    loop._Fetcher.__call__ = spied_fetch  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        loop._Fetcher.__call__ = fetch  # type: ignore[method-assign]
        for hook in hooks:
            hook.remove()


def _spy_main() -> None:
    """Run ``ecgbio`` with ``sys.argv`` under :func:`_observed`, and save what it saw to
    ``$ECGBIO_TEST_DDP_SPY/rank{RANK}.pt`` when the command ends."""
    from ecgbio import cli

    with _observed() as seen:
        try:
            cli.main()
        finally:
            rank = os.environ.get("RANK", "0")
            torch.save(seen, Path(os.environ[SPY_ENV]) / f"rank{rank}.pt")


if __name__ == "__main__":
    sys.argv[0] = "ecgbio"
    _spy_main()
