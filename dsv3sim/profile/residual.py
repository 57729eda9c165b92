"""Residual correction from scattered measurements: what the lattice misses near a query (numpy, no torch).

The lattice (``grid.py``) measures "nice" shapes: powers of two and their 1.5x midpoints. A query off the
lattice is interpolated between them (``predict.py``); the error of that interpolation at random shapes is
measured by the scatter set (``profiles/<gpu>/scatter.csv``: thousands of random shapes, ``grid.scattered``).
For each scatter point s the residual is ``r_s = log(t_measured / t_lattice)``; a query q gets

    corr(q) = sum_{s in kNN(q)} w_s r_s / (sum w_s + PRIOR_W),   w_s = 1 / (d(q, s) + SOFT)            (1)

with d the Euclidean distance in log2(shape) over the op's interpolation keys, k = K_NEAREST nearest points
and a pseudo-weight PRIOR_W for "no correction" (shrinks the correction where scatter points are far away).
The prediction becomes ``t_lattice * exp(corr)``. This is inverse-distance-weighted kNN regression of the
residual (a kriging-free stand-in for Gaussian-process residual modelling, as in Vidur's random-forest
runtime estimator but with the roofline interpolation kept as the trend).

Measured effect (2-fold cross-validation on the H200 scatter, ``benchmarks/bench_predictor.py``): small for
GEMMs, whose residuals are mostly kernel-choice noise that no neighbour predicts; larger where the lattice is
biased (ops whose lattice misses a whole axis value).

Error band: what remains after the correction is the neighbours' scatter around it, so the predictor also
reports a 90 % band ``exp(Z90 * sigma) - 1`` with

    sigma^2(q) = (sum_s w_s (r_s - corr(q))^2 + PRIOR_W * sigma_all^2) / (sum w_s + PRIOR_W)            (2)

(sigma_all: the slice's residual RMS, standing in where neighbours are few or far). Its calibration (share of
never-measured shapes whose error falls inside their band; 90 % if honest) is printed by the benchmark.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

K_NEAREST = 8
Z90 = 1.6449  # two-sided 90 % of a normal in log-time
SOFT = 0.25  # log2 units: a neighbour at distance 0 weighs 4, at one octave 0.8
PRIOR_W = 1.0


@dataclass(frozen=True, slots=True)
class Residuals:
    """Residuals of one (op, dtype, fixed keys) slice of a scatter table."""

    dims: tuple[str, ...]
    x: np.ndarray  # [n, len(dims)] log2 of the shape keys
    r: np.ndarray  # [n] log(measured / lattice prediction)

    var_all: float  # mean r^2 of the slice: the prior variance of eq. (2)

    @classmethod
    def build(cls, dims: tuple[str, ...], shapes: Sequence[dict], residuals: Sequence[float]) -> Residuals:
        x = np.log2(np.array([[float(s[k]) for k in dims] for s in shapes], dtype=float).reshape(-1, len(dims)))
        r = np.asarray(residuals, dtype=float)
        return cls(dims=dims, x=x, r=r, var_all=float((r ** 2).mean()) if len(r) else 0.0)

    def estimate(self, q: dict) -> tuple[float, float | None]:
        """(eq. 1 correction, eq. 2 band) at shape ``q`` from one nearest-neighbour search; (0, None) without
        points, band None with fewer than two."""
        if len(self.r) == 0:
            return 0.0, None
        xq = np.log2(np.array([float(q[k]) for k in self.dims]))
        d = np.sqrt(((self.x - xq) ** 2).sum(axis=1))
        k = min(K_NEAREST, len(d))
        idx = np.argpartition(d, k - 1)[:k]
        w = 1.0 / (d[idx] + SOFT)
        c = float((w * self.r[idx]).sum() / (w.sum() + PRIOR_W))
        if len(self.r) < 2:
            return c, None
        var = ((w * (self.r[idx] - c) ** 2).sum() + PRIOR_W * self.var_all) / (w.sum() + PRIOR_W)
        return c, float(np.expm1(Z90 * np.sqrt(var)))

    def correction(self, q: dict) -> float:
        """Eq. (1) at shape ``q`` (0 when there is no scatter point)."""
        return self.estimate(q)[0]

    def band90(self, q: dict) -> float | None:
        """Eq. (2): relative half-width of the 90 % band of the corrected prediction (None without points)."""
        return self.estimate(q)[1]
