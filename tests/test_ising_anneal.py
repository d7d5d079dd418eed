"""``training.anneal_betas``: the warm-up through higher temperatures inside one run."""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from ot_pde.io import ResultFile
from ot_pde.ising.exact import BETA_C
from ot_pde.ising.variational.problem import IsingTrainingRun

from .conftest import json_line
from .test_ising_variational import SMALL

ANNEALED = SMALL.replace("batch_size = 16", "batch_size = 16\nanneal_betas = [0.2, 0.3]")
SCAN = SMALL.replace("[estimate]", f"[scan]\nbetas = [0.2, 0.3, {BETA_C!r}]\n[estimate]")


def _interrupted_then_restarted(cli, case, part, at: int) -> None:
    real_step = IsingTrainingRun.step

    def step_then_interrupt(self):
        row = real_step(self)
        if self.iteration == at:
            os.kill(os.getpid(), signal.SIGINT)  # handled by the runner between iterations
        return row

    IsingTrainingRun.step = step_then_interrupt
    try:
        code, _, err = cli("run", case, "-o", part, "--backend", "numpy")
    finally:
        IsingTrainingRun.step = real_step
    assert code == 130, err
    with ResultFile(part) as rf:
        assert rf.status == "interrupted" and rf.checkpoint()[1] == at
    code, _, err = cli("run", case, "-o", part, "--backend", "numpy", "--restart",
                       "--keep-checkpoint")
    assert code == 0, err


def test_annealed_training_is_the_scan_without_its_estimates(cli, tmp_path):
    """The flow trained through 0.2 and 0.3 to beta_c is, to the bit, the one a scan over the
    same temperatures ends with (same batches, a fresh Adam and schedule at each temperature);
    the estimators run at beta_c only."""
    annealed, scan = tmp_path / "annealed.toml", tmp_path / "scan.toml"
    annealed.write_text(ANNEALED)
    scan.write_text(SCAN)
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    code, stdout, err = cli("run", annealed, "-o", a, "--backend", "numpy", "--json",
                            "--keep-checkpoint")
    assert code == 0, err
    s = json_line(stdout)["summary"]
    assert s["iterations"] == 60 and s["beta"] == BETA_C
    assert s["importance_error_in_stderr"] <= 4.0
    code, _, err = cli("run", scan, "-o", b, "--backend", "numpy", "--keep-checkpoint")
    assert code == 0, err
    with ResultFile(a) as ra, ResultFile(b) as rb:
        assert np.array_equal(ra.checkpoint()[0]["params"], rb.checkpoint()[0]["params"])
        assert np.array_equal(ra.history()["loss"], rb.history()["loss"])
        assert list(ra.history()["beta"][[0, 19, 20, 40, 59]]) == [0.2, 0.2, 0.3, BETA_C,
                                                                   BETA_C]
        assert ra.history()["lr"][20] == ra.history()["lr"][0]  # the schedule restarts


@pytest.mark.parametrize("at", [20, 30])  # at a temperature's first step, and inside one
def test_annealed_training_restarts_bit_for_bit(cli, tmp_path, at):
    case = tmp_path / "annealed.toml"
    case.write_text(ANNEALED.replace("anneal_betas", "anneal_iterations = 20\nanneal_betas"))
    full, part = tmp_path / "full.h5", tmp_path / "part.h5"
    code, _, err = cli("run", case, "-o", full, "--backend", "numpy", "--keep-checkpoint")
    assert code == 0, err
    _interrupted_then_restarted(cli, case, part, at)
    with ResultFile(full) as a, ResultFile(part) as b:
        assert np.array_equal(a.checkpoint()[0]["params"], b.checkpoint()[0]["params"])
        assert a.summary()["lnZ_per_site_importance"] == b.summary()["lnZ_per_site_importance"]


@pytest.mark.parametrize("extra,key", [
    ("training.anneal_iterations = 5", "training.anneal_iterations"),  # no temperatures
    ("training.anneal_lr_final = 1e-3", "training.anneal_lr_final"),  # no temperatures
    ("[training]\nanneal_betas = [0.3]\nanneal_lr_final = 0.0", "training.anneal_lr_final"),
    ("[scan]\nbetas = [0.3, 0.4]", "training.anneal_betas"),  # a scan warms up by itself
    ('[base]\nfamily = "checkerboard_mixture"', "training.anneal_betas"),  # fitted at one beta
    ("[training]\nanneal_betas = [0.0]", "training.anneal_betas"),
    ("[training]\nanneal_betas = [0.3]\nanneal_iterations = 0", "training.anneal_iterations"),
])
def test_bad_annealing_input_exits_2(cli, tmp_path, extra, key):
    if extra.startswith("[training]"):
        text = SMALL.replace("[training]", extra)
    elif extra.startswith("training."):
        text = SMALL.replace("batch_size = 16", "batch_size = 16\n" + extra.split(".", 1)[1])
    else:
        text = ANNEALED + extra + "\n"
    case = tmp_path / "bad.toml"
    case.write_text(text)
    code, _, err = cli("run", case, "-o", tmp_path / "r.h5")
    assert code == 2, err
    assert key in err and str(case) in err


def test_warm_up_and_last_temperature_decay_to_their_own_final_rates(cli, tmp_path):
    """anneal_lr_final ends each warm-up temperature's schedule, lr_final the last one's; the
    warm-up is then the run with lr_final = anneal_lr_final, to the bit."""
    base = ANNEALED.replace("anneal_betas", "anneal_iterations = 20\nanneal_betas")
    own = base.replace("anneal_betas", "lr_final = 1e-3\nanneal_lr_final = 4e-3\nanneal_betas")
    same = base.replace("anneal_betas", "lr_final = 4e-3\nanneal_betas")
    histories = []
    for name, text in (("own", own), ("same", same)):
        case = tmp_path / f"{name}.toml"
        case.write_text(text)
        code, _, err = cli("run", case, "-o", tmp_path / f"{name}.h5", "--backend", "numpy")
        assert code == 0, err
        with ResultFile(tmp_path / f"{name}.h5") as rf:
            histories.append(rf.history())
    h, ref = histories
    lr = h["lr"]
    first = lr[0]
    ratio = 4e-3 / first
    assert np.isclose(lr[19], first * ratio ** (19 / 20), rtol=1e-12)  # warm-up: to 4e-3
    assert lr[40] == first  # the last temperature restarts the schedule ...
    assert np.isclose(lr[59], first * (1e-3 / first) ** (19 / 20), rtol=1e-12)  # ... to 1e-3
    assert np.array_equal(h["loss"][:40], ref["loss"][:40])
    assert not np.array_equal(h["loss"][40:], ref["loss"][40:])
