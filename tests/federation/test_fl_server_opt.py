"""Server optimisers of the aggregate (FedAvgM, FedAdam, FedYogi) on hand-computed cases (no Django)."""

import numpy as np
import pytest

from federation.fl.server_opt import (
    SERVER_OPTIMIZERS,
    ServerOptimizer,
    ServerOptimizerState,
    load_state,
    save_state,
    server_step,
)


def _step(opt, current, aggregated, state=None):
    state = state if state is not None else ServerOptimizerState()
    return server_step([np.asarray(current, dtype=np.float32)], [np.asarray(aggregated, dtype=np.float32)], opt, state)[0], state


def test_plain_fedavg_takes_the_aggregate():
    opt = ServerOptimizer()
    assert opt.is_plain_fedavg and str(opt) == "none (plain FedAvg)"
    out, state = _step(opt, [1.0, 2.0], [1.5, 1.0])
    np.testing.assert_allclose(out, [1.5, 1.0])
    assert out.dtype == np.float32 and state.steps == 1


def test_server_learning_rate_scales_the_pseudo_gradient():
    out, _ = _step(ServerOptimizer(learning_rate=2.0), [1.0], [1.5])
    np.testing.assert_allclose(out, [2.0])  # 1 + 2·0.5


def test_fedavgm_accumulates_momentum_over_rounds():
    # Hsu et al. 2019: v ← βv + Δ, x ← x + ηv.  Δ₁ = 1 → v = 1, x = 1;  Δ₂ = 1 (aggregate 2) → v = 0.9 + 1, x = 2.9.
    opt = ServerOptimizer(name="fedavgm", momentum=0.9)
    x1, state = _step(opt, [0.0], [1.0])
    np.testing.assert_allclose(x1, [1.0])
    x2, state = _step(opt, x1, [2.0], state)
    np.testing.assert_allclose(x2, [2.9], rtol=1e-6)
    assert state.steps == 2
    np.testing.assert_allclose(state.first[0], [1.9])


def test_fedadam_first_step_is_eta_times_normalised_moment():
    # m = 0.1·Δ, v = 0.99·τ² + 0.01·Δ², x += η m / (√v + τ), Δ = 0.02, τ = 1e-3, η = 0.01.
    opt = ServerOptimizer(name="fedadam", learning_rate=0.01)
    out, state = _step(opt, [0.0, 0.0], [0.02, -0.02])
    m, v = 0.1 * 0.02, 0.99e-6 + 0.01 * 0.02**2
    expected = 0.01 * m / (np.sqrt(v) + 1e-3)
    np.testing.assert_allclose(out, [expected, -expected], rtol=1e-5)
    np.testing.assert_allclose(state.second[0], [v, v])


def test_fedyogi_second_moment_moves_by_the_sign_of_the_gap():
    # v ← v − (1 − β₂) Δ² sign(v − Δ²): with v = τ² < Δ² it grows by 0.01·Δ².
    opt = ServerOptimizer(name="fedyogi", learning_rate=0.01)
    _, state = _step(opt, [0.0], [0.02])
    np.testing.assert_allclose(state.second[0], [1e-6 + 0.01 * 0.02**2])
    assert "FedYogi" in str(opt)


def test_integer_layers_take_the_aggregate_and_the_real_network_keeps_its_dtypes():
    from federation.fl.local import ModelSpec, initial_arrays

    spec = ModelSpec()
    current = initial_arrays(spec, seed=0)
    aggregated = initial_arrays(spec, seed=1)
    out = server_step(current, aggregated, ServerOptimizer(name="fedavgm"), ServerOptimizerState())
    assert [a.dtype for a in out] == [a.dtype for a in current]
    assert [a.shape for a in out] == [a.shape for a in current]
    # First FedAvgM step with η = 1 is plain FedAvg.
    for o, a in zip(out, aggregated):
        np.testing.assert_allclose(o, a, atol=1e-6)
    counter = server_step([np.array([3], dtype=np.int64)], [np.array([5], dtype=np.int64)],
                          ServerOptimizer(name="fedadam", learning_rate=0.1), ServerOptimizerState())
    assert counter[0].dtype == np.int64 and counter[0][0] == 5


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"name": "sgd"}, "unknown server optimizer"),
        ({"learning_rate": 0.0}, "positive"),
        ({"learning_rate": float("nan")}, "positive"),
        ({"name": "fedavgm", "momentum": 1.0}, "momentum"),
        ({"beta2": -0.1}, "beta2"),
        ({"tau": 0.0}, "tau"),
    ],
)
def test_bad_optimizer_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ServerOptimizer(**kwargs)


def test_bad_step_input_is_refused():
    opt = ServerOptimizer(name="fedavgm")
    with pytest.raises(ValueError, match="1 current layers but 2"):
        server_step([np.zeros(2)], [np.zeros(2), np.zeros(1)], opt, ServerOptimizerState())
    with pytest.raises(ValueError, match="shape"):
        server_step([np.zeros(2)], [np.zeros(3)], opt, ServerOptimizerState())
    with pytest.raises(ValueError, match="not finite"):
        server_step([np.zeros(2)], [np.array([0.0, np.inf])], opt, ServerOptimizerState())
    state = ServerOptimizerState()
    server_step([np.zeros(2), np.zeros(1)], [np.ones(2), np.ones(1)], opt, state)
    with pytest.raises(ValueError, match="state holds 2 layers"):
        server_step([np.zeros(2)], [np.ones(2)], opt, state)
    with pytest.raises(ValueError, match="state has shape"):
        server_step([np.zeros(3), np.zeros(1)], [np.ones(3), np.ones(1)], opt, state)


def test_state_round_trips_through_a_file(tmp_path):
    opt = ServerOptimizer(name="fedadam", learning_rate=0.01)
    state = ServerOptimizerState()
    server_step([np.zeros(2, np.float32), np.zeros((1, 1), np.float32)], [np.ones(2, np.float32), np.ones((1, 1), np.float32)], opt, state)
    save_state(tmp_path / "s.npz", state)
    back = load_state(tmp_path / "s.npz")
    assert back.steps == 1
    for a, b in zip(state.first + state.second, back.first + back.second):
        np.testing.assert_array_equal(a, b)
    # A resumed optimiser continues exactly as the uninterrupted one.
    x = [np.ones(2, np.float32), np.ones((1, 1), np.float32)]
    agg = [np.full(2, 3.0, np.float32), np.full((1, 1), 3.0, np.float32)]
    for a, b in zip(server_step(x, agg, opt, state), server_step(x, agg, opt, back)):
        np.testing.assert_array_equal(a, b)


def test_loading_something_else_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_state(tmp_path / "missing.npz")
    np.savez(tmp_path / "weights.npz", np.zeros(2))
    with pytest.raises(ValueError, match="not a server optimizer state"):
        load_state(tmp_path / "weights.npz")
    np.savez(tmp_path / "half.npz", steps=np.int64(1), first_0=np.zeros(2))
    with pytest.raises(ValueError, match="1 first moments but 0"):
        load_state(tmp_path / "half.npz")


def test_run_config_reading_and_launcher_defaults_agree():
    from federation.fl.launcher import APP_CONFIG_DEFAULTS

    opt = ServerOptimizer.from_run_config({"server-optimizer": "fedavgm", "server-lr": 1.0, "server-momentum": 0.7})
    assert (opt.name, opt.learning_rate, opt.momentum) == ("fedavgm", 1.0, 0.7)
    assert ServerOptimizer.from_run_config(APP_CONFIG_DEFAULTS) == ServerOptimizer()
    assert ServerOptimizer.from_run_config({}) == ServerOptimizer()
    assert set(SERVER_OPTIMIZERS) == {"none", "fedavgm", "fedadam", "fedyogi"}
    with pytest.raises(ValueError, match="unknown server optimizer"):
        ServerOptimizer.from_run_config({"server-optimizer": "adam"})
