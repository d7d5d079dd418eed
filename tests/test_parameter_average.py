"""``training.average_decay``: the estimators use a moving average of the parameters, which
training never sees."""
from __future__ import annotations

import numpy as np
import pytest

from ot_pde.errors import InputError
from ot_pde.flows.training import TrainingRun
from ot_pde.io import ResultFile

from .conftest import json_line
from .test_ising_anneal import ANNEALED, _interrupted_then_restarted

AVERAGED = ANNEALED.replace("anneal_betas", "average_decay = 0.9\nanneal_iterations = 20\n"
                                            "anneal_betas")


class _Walk:
    """A potential whose parameters a test sets step by step."""

    def __init__(self):
        self.params = np.zeros(3)
        self.n_params = 3

    def set_params(self, params):
        self.params = np.array(params, dtype=np.float64)


class _Trainer:
    def __init__(self, potential, path):
        self.potential, self.path, self.optimizer, self.iteration = potential, path, None, 0

    def step(self):
        self.potential.set_params(self.path[self.iteration])
        self.iteration += 1
        return {"loss": 0.0, "grad_norm": 0.0}


def test_average_is_the_exponential_moving_average_of_the_steps():
    path = np.random.default_rng(1).normal(size=(6, 3))
    pot = _Walk()

    class Optimizer:
        lr = None

    trainer = _Trainer(pot, path)
    trainer.optimizer = Optimizer()
    run = TrainingRun(pot, trainer, 6, 1e-3, None, average_decay=0.75)
    with run.averaged() as before:  # no step yet: the potential as it is
        assert np.array_equal(before.params, np.zeros(3))
    for _ in range(6):
        run.step()
    weights = 0.75 ** np.arange(5, -1, -1)  # d^(steps after each), bias-corrected below
    expected = weights @ path / weights.sum()
    with run.averaged() as averaged:
        assert np.allclose(averaged.params, expected, rtol=0, atol=1e-15)
    assert np.array_equal(pot.params, path[-1])  # restored after the block
    with pytest.raises(ValueError, match="average_decay"):
        TrainingRun(pot, trainer, 6, 1e-3, None, average_decay=1.0)


def test_training_never_sees_the_average_and_the_estimate_uses_it(cli, tmp_path):
    plain, averaged = tmp_path / "plain.toml", tmp_path / "averaged.toml"
    plain.write_text(ANNEALED.replace("anneal_betas", "anneal_iterations = 20\nanneal_betas"))
    averaged.write_text(AVERAGED)
    results = {}
    for name, case in (("plain", plain), ("averaged", averaged)):
        out = tmp_path / f"{name}.h5"
        code, stdout, err = cli("run", case, "-o", out, "--backend", "numpy", "--json",
                                "--keep-checkpoint")
        assert code == 0, err
        with ResultFile(out) as rf:
            results[name] = (json_line(stdout)["summary"], rf.history()["loss"],
                             rf.checkpoint()[0])
    (s0, loss0, ck0), (s1, loss1, ck1) = results["plain"], results["averaged"]
    assert np.array_equal(loss0, loss1)
    assert np.array_equal(ck0["params"], ck1["params"])
    assert "average_params" not in ck0
    assert not np.array_equal(ck1["average_params"], ck1["params"])
    assert s0["lnZ_per_site_variational"] != s1["lnZ_per_site_variational"]
    assert s1["importance_error_in_stderr"] <= 4.0


def test_decay_zero_is_the_last_step(cli, tmp_path):
    """d = 0 'averages' one step: the estimates are those of the plain run to the bit."""
    plain, last = tmp_path / "plain.toml", tmp_path / "last.toml"
    plain.write_text(ANNEALED)
    last.write_text(ANNEALED.replace("anneal_betas", "average_decay = 0.0\nanneal_betas"))
    summaries = []
    for case in (plain, last):
        code, stdout, err = cli("run", case, "-o", tmp_path / "o.h5", "--backend", "numpy",
                                "--json", "--overwrite")
        assert code == 0, err
        summaries.append(json_line(stdout)["summary"])
    assert (summaries[0]["lnZ_per_site_variational"]
            == summaries[1]["lnZ_per_site_variational"])


# inside the last temperature, where the restored average is the one the estimators use
@pytest.mark.parametrize("at", [45, 55])
def test_averaged_run_restarts_bit_for_bit(cli, tmp_path, at):
    case = tmp_path / "averaged.toml"
    case.write_text(AVERAGED)
    full, part = tmp_path / "full.h5", tmp_path / "part.h5"
    code, _, err = cli("run", case, "-o", full, "--backend", "numpy", "--keep-checkpoint")
    assert code == 0, err
    _interrupted_then_restarted(cli, case, part, at)
    with ResultFile(full) as a, ResultFile(part) as b:
        assert np.array_equal(a.checkpoint()[0]["average_params"],
                              b.checkpoint()[0]["average_params"])
        assert a.summary()["lnZ_per_site_variational"] == b.summary()["lnZ_per_site_variational"]


def test_state_without_or_with_a_wrong_average_is_refused():
    """A checkpoint's state must carry an average of the potential's size; at iteration 0
    it holds the parameters and the restarted run starts its average at the first step."""
    pot = _Walk()
    trainer = _Trainer(pot, np.zeros((1, 3)))

    def load_state(state):
        trainer.iteration = state["iteration"]

    trainer.load_state = load_state
    run = TrainingRun(pot, trainer, 1, 1e-3, None, average_decay=0.5)
    with pytest.raises(InputError, match="average_decay"):
        run.load_state({"params": np.zeros(3), "iteration": 1})
    with pytest.raises(InputError, match=r"shape \(2,\)"):
        run.load_state({"average_params": np.zeros(2), "iteration": 1})
    run.load_state({"average_params": np.ones(3), "iteration": 0})
    assert run.average is None
    run.load_state({"average_params": np.ones(3), "iteration": 1})
    assert np.array_equal(run.average, np.ones(3))
