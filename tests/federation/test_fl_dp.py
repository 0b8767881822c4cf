"""Local differential privacy through Flower's LocalDpMod, on hand-computed updates (no Django)."""

import numpy as np
import pytest
from flwr.app import Context, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from federation.fl.flower_app import privatise_update


@pytest.fixture
def client_context():
    # Flower sets the process's task identity when it runs a ClientApp; here we are that process.
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
    try:
        yield Context(run_id=1, node_id=2, node_config={}, state=RecordDict(), run_config={})
    finally:
        TaskIdentity.run_id = TaskIdentity.node_id = TaskIdentity.task_id = None


def test_update_is_clipped_to_the_norm(client_context):
    received = [np.array([1.0, 1.0], dtype=np.float32)]
    # Δ = [3, 4] (norm 5) clipped to norm 1 → [0.6, 0.8]; ε huge makes the noise negligible.
    out = privatise_update(received, client_context, [np.array([4.0, 5.0], dtype=np.float32)], clipping_norm=1.0, epsilon=1e9, delta=1e-5)
    np.testing.assert_allclose(out[0], [1.6, 1.8], atol=1e-5)


def test_noise_follows_the_gaussian_mechanism(client_context):
    received = [np.ones(20000, dtype=np.float32)]
    # Δ has norm 0.14, under the clipping norm, so it passes unscaled and only the noise is added.
    trained = [np.full(20000, 1.001, dtype=np.float32)]
    out = privatise_update(received, client_context, trained, clipping_norm=0.5, epsilon=2.0, delta=1e-5)
    sigma = 0.5 * np.sqrt(2 * np.log(1.25 / 1e-5)) / 2.0
    assert np.std(out[0] - trained[0]) == pytest.approx(sigma, rel=0.05)


def test_bad_privacy_parameters_are_refused(client_context):
    received = [np.array([1.0, 1.0], dtype=np.float32)]
    with pytest.raises(ValueError):
        privatise_update(received, client_context, [np.ones(2, dtype=np.float32)], clipping_norm=0.0, epsilon=1.0, delta=1e-5)
