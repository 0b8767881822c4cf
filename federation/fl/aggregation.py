"""Aggregation of client updates: FedAvg and the FedProx proximal term.

Weights travel as lists of NumPy arrays in the order of ``state_dict().values()`` (Flower's
``ArrayRecord`` keeps the same order); every list of one round has the same shapes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["fedavg", "weighted_mean", "proximal_term", "state_to_arrays", "arrays_to_state"]


def fedavg(updates: Sequence[Sequence[np.ndarray]], num_examples: Sequence[int]) -> list[np.ndarray]:
    """Average client weights, each weighted by its number of training examples.

    ``w = Σ_k n_k w_k / Σ_k n_k`` (McMahan et al., "Communication-Efficient Learning of Deep
    Networks from Decentralized Data", AISTATS 2017, Algorithm 1).

    Parameters
    ----------
    updates : sequence of sequence of ndarray
        One list of arrays per client; list ``k`` holds client ``k``'s weights, layer by layer.
    num_examples : sequence of int
        Examples client ``k`` trained on (``n_k ≥ 0``, at least one positive).

    Returns
    -------
    list of ndarray
        The averaged layers, float64 for floating inputs; integer layers (e.g. BatchNorm's
        ``num_batches_tracked``) are averaged and rounded back to their dtype.

    Raises
    ------
    ValueError
        No update, a count per update missing, a negative count, all counts zero, or layers whose
        number or shapes differ between clients.
    """
    if not updates:
        raise ValueError("FedAvg needs at least one client update")
    if len(updates) != len(num_examples):
        raise ValueError(f"{len(updates)} updates but {len(num_examples)} example counts")
    counts = np.asarray(num_examples, dtype=np.float64)
    if np.any(counts < 0):
        raise ValueError(f"example counts cannot be negative: {list(num_examples)}")
    total = counts.sum()
    if total <= 0:
        raise ValueError("FedAvg needs at least one client with a positive example count")
    n_layers = len(updates[0])
    for k, update in enumerate(updates):
        if len(update) != n_layers:
            raise ValueError(f"client {k} sent {len(update)} layers, client 0 sent {n_layers}")
    averaged = []
    for layer in range(n_layers):
        arrays = [np.asarray(update[layer]) for update in updates]
        shape = arrays[0].shape
        for k, array in enumerate(arrays):
            if array.shape != shape:
                raise ValueError(f"layer {layer}: client {k} has shape {array.shape}, client 0 has {shape}")
        mean = sum(c * a.astype(np.float64) for c, a in zip(counts, arrays)) / total
        if np.issubdtype(arrays[0].dtype, np.integer):
            mean = np.rint(mean).astype(arrays[0].dtype)
        averaged.append(np.asarray(mean))
    return averaged


def weighted_mean(values: Sequence[float], weights: Sequence[float]) -> float:
    """Return ``Σ w_i v_i / Σ w_i`` ignoring NaN values (their weight is dropped too).

    Raises
    ------
    ValueError
        Lengths differ or no finite value carries a positive weight.
    """
    v = np.asarray(values, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if v.shape != w.shape:
        raise ValueError(f"{v.size} values but {w.size} weights")
    keep = np.isfinite(v) & (w > 0)
    if not keep.any():
        raise ValueError("no finite value with a positive weight")
    return float((v[keep] * w[keep]).sum() / w[keep].sum())


def proximal_term(params, global_params, mu: float):
    """Return FedProx's proximal term ``(μ/2) Σ ||w − w_global||²`` as a torch scalar.

    Li et al., "Federated Optimization in Heterogeneous Networks", MLSys 2020, eq. (2): each client
    minimises ``F_k(w) + (μ/2)||w − w^t||²``; add this term to the local loss before ``backward()``.

    Parameters
    ----------
    params : iterable of torch.Tensor
        The local model's trainable parameters (requires_grad).
    global_params : iterable of torch.Tensor
        The round's global parameters, same order and shapes, detached.
    mu : float
        Proximal coefficient ``μ ≥ 0``; 0 gives plain FedAvg local training.

    Raises
    ------
    ValueError
        ``mu`` negative, or the two parameter lists differ in length or shape.
    """
    import torch

    if mu < 0:
        raise ValueError(f"mu must be non-negative, got {mu}")
    params, global_params = list(params), list(global_params)
    if len(params) != len(global_params):
        raise ValueError(f"{len(params)} local parameters but {len(global_params)} global ones")
    total = torch.zeros((), dtype=torch.float32)
    for p, g in zip(params, global_params):
        if p.shape != g.shape:
            raise ValueError(f"parameter shapes differ: {tuple(p.shape)} vs {tuple(g.shape)}")
        total = total + torch.sum((p - g.detach()) ** 2)
    return 0.5 * mu * total


def state_to_arrays(state_dict) -> list[np.ndarray]:
    """Return the tensors of a torch ``state_dict`` as NumPy arrays, in key order."""
    return [t.detach().cpu().numpy().copy() for t in state_dict.values()]


def arrays_to_state(reference_state, arrays: Sequence[np.ndarray]) -> dict:
    """Return a ``state_dict`` with the keys and dtypes of ``reference_state`` and the given values.

    Raises
    ------
    ValueError
        The number of arrays or a shape does not match.
    """
    import torch

    keys = list(reference_state.keys())
    if len(keys) != len(arrays):
        raise ValueError(f"model has {len(keys)} tensors, got {len(arrays)} arrays")
    state = {}
    for key, array in zip(keys, arrays):
        ref = reference_state[key]
        if tuple(ref.shape) != tuple(np.shape(array)):
            raise ValueError(f"{key}: expected shape {tuple(ref.shape)}, got {tuple(np.shape(array))}")
        state[key] = torch.as_tensor(np.asarray(array)).to(ref.dtype)
    return state
