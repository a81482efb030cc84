"""Real two-process DDP training on CPU (gloo), launched by torchrun like a user would.

Why a subprocess and not a mock: what breaks under DDP is the interplay of processes (unequal step
counts deadlock the gradient all-reduce, rank-0-only validation must not leave rank 1 stuck in a
collective, rank 0 must save what both ranks trained), and only real processes show it.

"Trained in lockstep" is checked, not assumed: torchrun launches this very file as its script
(see ``_spy_main`` at the bottom), which runs the unchanged ``ecgbio`` CLI with two observers
added, an optimizer step hook (public torch API) that records the parameters after every step, and
a wrapper around the training loop's batch fetcher that records which beats each step used. The
test then requires identical parameters on both ranks after every step, the same initial weights as
a single-process run with the same seed, and that the ranks' batches interleave to exactly the
single-process batch sequence (each rank takes every 2nd batch of the same seeded sequence).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
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


def _train(store: Path, work: Path, batch_size: int, ddp: bool) -> Run:
    """``ecgbio train`` on ``store``: under torchrun with 2 processes, or as one plain process."""
    out, spy = work / "run", work / "spy"
    spy.mkdir(parents=True)
    cli = ["train", "--store", str(store), "--out", str(out), "--protocol", "cross-session"]
    cli += ["--epochs", str(EPOCHS), *MODEL_ARGS, "--batch-size", str(batch_size)]
    cli += ["--threads", "1", "-q"]
    launcher = [sys.executable]
    if ddp:
        launcher += ["-m", "torch.distributed.run", "--nproc_per_node", str(WORLD)]
        launcher += ["--master_port", str(_free_port())]
    env = {k: v for k, v in os.environ.items() if k not in DDP_ENV}
    # this tree's ecgbio even where the venv's editable install points at another checkout
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), **{SPY_ENV: str(spy)})
    proc = subprocess.Popen(
        [*launcher, str(Path(__file__).resolve()), *cli],
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


# batch 12 -> 59 // 12 = 4 batches per epoch: an even split, 2 steps per rank
@pytest.fixture(scope="module")
def ddp_run(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _train(store, tmp_path_factory.mktemp("ddp12"), batch_size=12, ddp=True)


@pytest.fixture(scope="module")
def single_run(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _train(store, tmp_path_factory.mktemp("single12"), batch_size=12, ddp=False)


def _history(out: Path) -> list[dict[str, str]]:
    with open(out / "history.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _assert_lockstep(ddp: Run, single: Run | None = None) -> None:
    """Both ranks took the same number of steps and had identical weights after every one of them;
    with ``single``, they also started from its initial weights and split its batch sequence."""
    assert sorted(ddp.ranks) == ["rank0", "rank1"], ddp.explain()
    r0, r1 = ddp.ranks["rank0"], ddp.ranks["rank1"]
    assert len(r0["params"]) == len(r1["params"]) > 0
    assert torch.equal(r0["initial"], r1["initial"])
    for step, (a, b) in enumerate(zip(r0["params"], r1["params"], strict=True)):
        assert torch.equal(a, b), f"ranks diverged at step {step}"
    final = r0["params"][-1]
    assert torch.isfinite(final).all()
    assert not torch.equal(final, r0["initial"]), "training changed nothing"
    if single is None:
        return
    one = single.ranks["rank0"]
    assert torch.equal(r0["initial"], one["initial"]), "same seed, same initial weights"
    per_rank = len(r0["batches"]) // EPOCHS
    per_single = len(one["batches"]) // EPOCHS
    assert len(r0["batches"]) == EPOCHS * per_rank and WORLD * per_rank <= per_single
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


@pytest.mark.xfail(
    strict=True,
    reason="loop.train counts the schedule in all ranks' steps: under DDP each rank steps "
    "1/world_size as often, so warm-up and cosine never finish (see the DDP report)",
)
def test_ddp_learning_rate_schedule_runs_to_its_end(ddp_run: Run, single_run: Run) -> None:
    assert ddp_run.rc == 0 and single_run.rc == 0, ddp_run.explain()
    assert float(_history(single_run.out)[-1]["lr"]) == 0.0
    assert float(_history(ddp_run.out)[-1]["lr"]) == 0.0


@pytest.mark.xfail(
    strict=True,
    reason="cli.train_cmd prints every rank's result: rank 1 adds 'best epoch 0 of 0' and an "
    "empty 'test' line (see the DDP report)",
)
def test_ddp_prints_one_result(ddp_run: Run) -> None:
    assert ddp_run.rc == 0, ddp_run.explain()
    assert ddp_run.stdout.count("best epoch") == 1, ddp_run.stdout


@pytest.mark.xfail(
    strict=True,
    reason="loop.train gives ranks unequal step counts when the batches per epoch are not a "
    "multiple of the world size; the extra step's all-reduce crashes gloo (see the DDP report)",
)
def test_ddp_with_an_odd_number_of_batches(store: Path, tmp_path: Path) -> None:
    """59 beats / batch 16 = 3 batches per epoch, which two ranks cannot share evenly."""
    ddp = _train(store, tmp_path / "ddp16", batch_size=16, ddp=True)
    assert ddp.rc == 0, ddp.explain()
    assert [row["epoch"] for row in _history(ddp.out)] == ["1", "2"]
    _assert_lockstep(ddp)


# --- the launcher torchrun runs: the ecgbio CLI with observers ------------------------------------
def _spy_main() -> None:
    """Run ``ecgbio`` with ``sys.argv``, recording per step the parameters and the batch rows, and
    save them to ``$ECGBIO_TEST_DDP_SPY/rank{RANK}.pt`` when the command ends."""
    from torch.optim.optimizer import (
        register_optimizer_step_post_hook,
        register_optimizer_step_pre_hook,
    )

    from ecgbio import cli
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

    register_optimizer_step_pre_hook(before)
    register_optimizer_step_post_hook(after)
    loop._Fetcher.__call__ = spied_fetch  # type: ignore[method-assign]
    try:
        cli.main()
    finally:
        rank = os.environ.get("RANK", "0")
        torch.save(seen, Path(os.environ[SPY_ENV]) / f"rank{rank}.pt")


if __name__ == "__main__":
    sys.argv[0] = "ecgbio"
    _spy_main()
