"""Server-side optimisation of the aggregated update (FedOpt): FedAvgM, FedAdam, FedYogi.

Each round the coordinator aggregates the clients' models into ``x̄`` (FedAvg, RTIFed's
reputation-weighted mean, or SecAgg+'s unmasked mean). Plain FedAvg takes ``x_{t+1} = x̄``. FedOpt
(Reddi et al., "Adaptive Federated Optimization", ICLR 2021, Algorithm 2) instead treats the
*pseudo-gradient* ``Δ_t = x̄ − x_t`` as a gradient step and hands it to a server optimiser:

* ``fedavgm`` — server momentum (Hsu, Qi & Brown, "Measuring the Effects of Non-Identical Data
  Distribution for Federated Visual Classification", arXiv:1909.06335, 2019):
  ``v ← β v + Δ``, ``x ← x + η v``;
* ``fedadam`` — ``m ← β₁ m + (1 − β₁) Δ``, ``v ← β₂ v + (1 − β₂) Δ²``, ``x ← x + η m / (√v + τ)``;
* ``fedyogi`` — as FedAdam with ``v ← v − (1 − β₂) Δ² sign(v − Δ²)``;
* ``none`` — ``x ← x + η Δ`` (η = 1 is plain FedAvg).

The optimiser needs only ``x_t`` and the aggregate, never a single client's update, so it works
unchanged under SecAgg+ and RTIFed. Weights are lists of NumPy arrays in ``state_dict`` order; integer
layers (``num_batches_tracked``) take the aggregate as it is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["SERVER_OPTIMIZERS", "ServerOptimizer", "ServerOptimizerState", "server_step", "save_state", "load_state"]

SERVER_OPTIMIZERS = ("none", "fedavgm", "fedadam", "fedyogi")


@dataclass(frozen=True)
class ServerOptimizer:
    """The coordinator's optimiser of the aggregated update (run config ``server-optimizer`` …).

    Attributes
    ----------
    name : str
        One of :data:`SERVER_OPTIMIZERS`.
    learning_rate : float
        Server learning rate η (> 0). 1 with ``none`` is plain FedAvg.
    momentum : float
        β of FedAvgM, in [0, 1).
    beta1, beta2 : float
        Moment decay rates of FedAdam/FedYogi, in [0, 1).
    tau : float
        Adaptivity τ of FedAdam/FedYogi (> 0); second moments start at τ² (Reddi et al.).

    Raises
    ------
    ValueError
        An unknown name or a parameter outside its range.
    """

    name: str = "none"
    learning_rate: float = 1.0
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3

    def __post_init__(self):
        if self.name not in SERVER_OPTIMIZERS:
            raise ValueError(f"unknown server optimizer {self.name!r}; choose one of {', '.join(SERVER_OPTIMIZERS)}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"server learning rate must be positive, got {self.learning_rate}")
        for label, value in (("momentum", self.momentum), ("beta1", self.beta1), ("beta2", self.beta2)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"server {label} must lie in [0, 1), got {value}")
        if not self.tau > 0:
            raise ValueError(f"server tau must be positive, got {self.tau}")

    @classmethod
    def from_run_config(cls, cfg: Mapping) -> "ServerOptimizer":
        """Read ``server-optimizer``, ``server-lr``, ``server-momentum``, ``server-beta1``,
        ``server-beta2`` and ``server-tau`` from a Flower run config (missing keys: the defaults)."""
        d = cls()
        return cls(
            name=str(cfg.get("server-optimizer", d.name) or d.name),
            learning_rate=float(cfg.get("server-lr", d.learning_rate)),
            momentum=float(cfg.get("server-momentum", d.momentum)),
            beta1=float(cfg.get("server-beta1", d.beta1)),
            beta2=float(cfg.get("server-beta2", d.beta2)),
            tau=float(cfg.get("server-tau", d.tau)),
        )

    def __str__(self) -> str:
        if self.name == "none":
            return "none (plain FedAvg)" if self.is_plain_fedavg else f"none (η={self.learning_rate:g})"
        if self.name == "fedavgm":
            return f"FedAvgM (η={self.learning_rate:g}, β={self.momentum:g})"
        label = {"fedadam": "FedAdam", "fedyogi": "FedYogi"}[self.name]
        return f"{label} (η={self.learning_rate:g}, β₁={self.beta1:g}, β₂={self.beta2:g}, τ={self.tau:g})"

    @property
    def is_plain_fedavg(self) -> bool:
        """True when a step returns the aggregate unchanged (``none`` with η = 1)."""
        return self.name == "none" and self.learning_rate == 1.0


@dataclass
class ServerOptimizerState:
    """Moments carried from round to round: ``first`` (FedAvgM's v, FedAdam's m) and ``second``
    (FedAdam's/FedYogi's v), one float64 array per layer, or empty before the first step."""

    first: list = field(default_factory=list)
    second: list = field(default_factory=list)
    steps: int = 0


def server_step(
    current: Sequence[np.ndarray], aggregated: Sequence[np.ndarray], optimizer: ServerOptimizer, state: ServerOptimizerState
) -> list[np.ndarray]:
    """Return the next global weights from this round's ``current`` weights and their ``aggregated``
    value, updating ``state`` in place (formulas in the module docstring).

    Parameters
    ----------
    current : sequence of ndarray
        ``x_t``, the weights sent to the clients this round.
    aggregated : sequence of ndarray
        ``x̄``, the aggregate of the clients' models (same layers and shapes).
    optimizer : ServerOptimizer
    state : ServerOptimizerState
        Empty for the first round; its layer count must match afterwards.

    Returns
    -------
    list of ndarray
        ``x_{t+1}``, each layer in the dtype of ``current``.

    Raises
    ------
    ValueError
        Layer counts or shapes differ, a state from another model, or a non-finite update.
    """
    if len(current) != len(aggregated):
        raise ValueError(f"{len(current)} current layers but {len(aggregated)} aggregated layers")
    n = len(current)
    if state.first and len(state.first) != n:
        raise ValueError(f"server optimizer state holds {len(state.first)} layers, the model has {n}")
    fresh = not state.first
    out = []
    for i, (x, agg) in enumerate(zip(current, aggregated)):
        x, agg = np.asarray(x), np.asarray(agg)
        if x.shape != agg.shape:
            raise ValueError(f"layer {i}: current shape {x.shape}, aggregated shape {agg.shape}")
        if fresh:
            state.first.append(np.zeros(x.shape, dtype=np.float64))
            state.second.append(np.full(x.shape, optimizer.tau**2, dtype=np.float64))
        if not np.issubdtype(x.dtype, np.floating):
            out.append(agg.astype(x.dtype))
            continue
        if state.first[i].shape != x.shape:
            raise ValueError(f"layer {i}: server optimizer state has shape {state.first[i].shape}, the model {x.shape}")
        delta = agg.astype(np.float64) - x.astype(np.float64)
        if not np.all(np.isfinite(delta)):
            raise ValueError(f"layer {i}: the aggregated update is not finite")
        if optimizer.name == "none":
            step = delta
        elif optimizer.name == "fedavgm":
            state.first[i] = optimizer.momentum * state.first[i] + delta
            step = state.first[i]
        else:
            m = state.first[i] = optimizer.beta1 * state.first[i] + (1 - optimizer.beta1) * delta
            sq = delta * delta
            if optimizer.name == "fedadam":
                v = optimizer.beta2 * state.second[i] + (1 - optimizer.beta2) * sq
            else:  # fedyogi
                v = state.second[i] - (1 - optimizer.beta2) * sq * np.sign(state.second[i] - sq)
            state.second[i] = v
            step = m / (np.sqrt(v) + optimizer.tau)
        out.append((x.astype(np.float64) + optimizer.learning_rate * step).astype(x.dtype))
    state.steps += 1
    return out


def save_state(path: Path, state: ServerOptimizerState) -> None:
    """Write ``state`` to an ``.npz`` (``first_<i>``, ``second_<i>``, ``steps``), atomically."""
    import os

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    arrays = {f"first_{i}": a for i, a in enumerate(state.first)}
    arrays.update({f"second_{i}": a for i, a in enumerate(state.second)})
    np.savez(tmp, steps=np.int64(state.steps), **arrays)
    os.replace(tmp, path)


def load_state(path: Path) -> ServerOptimizerState:
    """Read a state written by :func:`save_state`.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        The file holds no ``steps`` entry or unequal moment lists.
    """
    with np.load(Path(path)) as data:
        if "steps" not in data.files:
            raise ValueError(f"{path} is not a server optimizer state (no 'steps')")
        n_first = sum(1 for k in data.files if k.startswith("first_"))
        n_second = sum(1 for k in data.files if k.startswith("second_"))
        if n_first != n_second:
            raise ValueError(f"{path}: {n_first} first moments but {n_second} second moments")
        return ServerOptimizerState(
            first=[data[f"first_{i}"] for i in range(n_first)],
            second=[data[f"second_{i}"] for i in range(n_second)],
            steps=int(data["steps"]),
        )
