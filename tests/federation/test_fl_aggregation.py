"""FedAvg and FedProx on hand-computed cases (no Django)."""

import numpy as np
import pytest
import torch

from federation.fl.aggregation import arrays_to_state, fedavg, proximal_term, state_to_arrays, weighted_mean


def test_fedavg_weights_clients_by_their_examples():
    a = [np.array([1.0, 2.0]), np.array([[0.0]])]
    b = [np.array([4.0, 8.0]), np.array([[3.0]])]
    # (1·[1,2] + 2·[4,8]) / 3 = [3, 6];  (1·0 + 2·3)/3 = 2
    out = fedavg([a, b], [1, 2])
    np.testing.assert_allclose(out[0], [3.0, 6.0])
    np.testing.assert_allclose(out[1], [[2.0]])


def test_fedavg_rounds_integer_layers_back_to_their_dtype():
    out = fedavg([[np.array([1], dtype=np.int64)], [np.array([4], dtype=np.int64)]], [1, 1])
    assert out[0].dtype == np.int64 and out[0][0] == 2  # rint(2.5) = 2 (round half to even)


def test_fedavg_with_a_zero_weight_client_ignores_it():
    out = fedavg([[np.array([1.0])], [np.array([100.0])]], [5, 0])
    np.testing.assert_allclose(out[0], [1.0])


@pytest.mark.parametrize(
    "updates,counts,message",
    [
        ([], [], "at least one"),
        ([[np.zeros(2)]], [1, 2], "1 updates but 2"),
        ([[np.zeros(2)], [np.zeros(2)]], [1, -1], "negative"),
        ([[np.zeros(2)], [np.zeros(2)]], [0, 0], "positive example count"),
        ([[np.zeros(2)], [np.zeros(3)]], [1, 1], "shape"),
        ([[np.zeros(2)], [np.zeros(2), np.zeros(1)]], [1, 1], "layers"),
    ],
)
def test_fedavg_rejects_bad_input(updates, counts, message):
    with pytest.raises(ValueError, match=message):
        fedavg(updates, counts)


def test_weighted_mean_skips_nan():
    assert weighted_mean([0.5, float("nan"), 1.0], [1, 5, 3]) == pytest.approx((0.5 + 3.0) / 4)
    with pytest.raises(ValueError):
        weighted_mean([float("nan")], [1])
    with pytest.raises(ValueError):
        weighted_mean([1.0], [1, 2])


def test_proximal_term_is_half_mu_times_squared_distance_and_its_gradient_pulls_back():
    w = torch.tensor([1.0, 3.0], requires_grad=True)
    g = torch.tensor([0.0, 1.0])
    term = proximal_term([w], [g], mu=0.1)
    # 0.1/2 · (1² + 2²) = 0.25
    assert float(term.detach()) == pytest.approx(0.25)
    term.backward()
    # d/dw = μ (w − g) = [0.1, 0.2]
    np.testing.assert_allclose(w.grad.numpy(), [0.1, 0.2], rtol=1e-6)


def test_proximal_term_rejects_bad_input():
    with pytest.raises(ValueError, match="non-negative"):
        proximal_term([torch.zeros(1)], [torch.zeros(1)], mu=-1)
    with pytest.raises(ValueError, match="shapes"):
        proximal_term([torch.zeros(2)], [torch.zeros(3)], mu=1)
    with pytest.raises(ValueError, match="global"):
        proximal_term([torch.zeros(2)], [], mu=1)


def test_state_round_trip_keeps_keys_and_dtypes():
    net = torch.nn.BatchNorm1d(3)
    arrays = state_to_arrays(net.state_dict())
    state = arrays_to_state(net.state_dict(), arrays)
    assert list(state) == list(net.state_dict())
    assert state["num_batches_tracked"].dtype == torch.int64
    with pytest.raises(ValueError, match="shape"):
        arrays_to_state(net.state_dict(), [np.zeros(4)] * len(arrays))
    with pytest.raises(ValueError, match="tensors"):
        arrays_to_state(net.state_dict(), arrays[:1])
