"""LAQ, loss-aware quantization (Hou and Kwok 2017, 2018), a baseline (docs/method.md#baselines)."""

from __future__ import annotations

import torch

from torch import nn

from .base import WeightQuantizer, grid_levels, straight_through, symmetric

_EPS = 1e-8


def bias_corrected_second_moment(optimizer: torch.optim.Optimizer, parameter: nn.Parameter) -> torch.Tensor | None:
    """Adam's v_hat = exp_avg_sq / (1 - beta2^t) of `parameter`, or None before its first step."""
    state = optimizer.state.get(parameter)
    if not state or "exp_avg_sq" not in state:
        return None
    beta2 = next(group["betas"][1] for group in optimizer.param_groups if any(p is parameter for p in group["params"]))
    step = float(state["step"])
    return state["exp_avg_sq"] / (1.0 - beta2**step)


class LAQQuantizer(WeightQuantizer):
    """Loss-aware quantization by an approximate proximal Newton step with a diagonal Hessian D.

    Where D comes from: after each optimizer step (`after_optimizer_step`) it reads the optimizer's
    second-moment estimate of its weight (Adam's bias-corrected `exp_avg_sq`, v) and keeps it with
    `set_curvature(v)`; D = sqrt(v) + eps, as in LAQ with Adam. Before the first step D = 1.

    In training mode each forward pass alternates, `iterations` times,
        b = nearest grid point of w / alpha            (ternary: b_i = sign(w_i) 1[|w_i| > alpha / 2])
        alpha = sum(D w b) / sum(D b b)                 (weighted least squares)
    For ternary b, sum(D w b) / sum(D b b) = ||D w b||_1 / ||D b||_1 (docs/method.md#baselines); for more bits
    the least-squares form is its generalization. The solver starts from the previous step's alpha
    (see `_start`). Then b is taken once more for the final alpha, which
    is kept in the buffer `alpha` so that evaluation and the packed export reproduce the training
    forward without the optimizer. The weight gets the straight-through gradient.
    """

    display_name = "LAQ"

    def __init__(self, bits: int, per_row: bool = False, rows: int | None = None, iterations: int = 2) -> None:
        super().__init__(bits, per_row, rows)
        self.iterations = iterations
        self.register_buffer("alpha", torch.zeros(self.parameter_shape()))
        self._curvature: torch.Tensor | None = None

    @classmethod
    def from_config(cls, bits, config, rows=None, transposed=False):
        return cls(bits, per_row=rows is not None, rows=rows, iterations=config.laq_iterations)

    def clipping_range(self, w: torch.Tensor):
        return symmetric(self.alpha)

    def after_optimizer_step(self, weight: nn.Parameter, optimizer: torch.optim.Optimizer) -> None:
        second_moment = bias_corrected_second_moment(optimizer, weight)
        if second_moment is not None:
            self.set_curvature(second_moment)

    def set_curvature(self, second_moment: torch.Tensor | None) -> None:
        """Take the optimizer's second-moment estimate v of the weight; D = sqrt(v) + eps."""
        self._curvature = None if second_moment is None else second_moment.detach().sqrt() + _EPS

    def _grid(self, w: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        k = grid_levels(self.bits)
        return torch.round(w / alpha * k).clamp(-k, k) / k

    def _sum(self, t: torch.Tensor) -> torch.Tensor:
        return t.sum(dim=tuple(range(1, t.dim())), keepdim=True) if self.per_row else t.sum()

    def _start(self, w: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """Warm start from the last alpha (LAQ's solver carries alpha across steps); a cold start is the
        D-weighted mean |w| for ternary (TWN-like) and max |w| for more bits (choice: starting a 4- or
        8-bit grid at mean |w| clips most weights and the alternation stays in that local optimum)."""
        if bool((self.alpha > 0).all()):
            return self.alpha.clone()
        if self.bits == 2:
            return (self._sum(d * w.abs()) / self._sum(d)).clamp_min(_EPS)
        magnitude = w.abs()
        return (magnitude.amax(dim=tuple(range(1, w.dim())), keepdim=True) if self.per_row else magnitude.max()).clamp_min(_EPS)

    @torch.no_grad()
    def solve(self, w: torch.Tensor, curvature: torch.Tensor | None = None) -> torch.Tensor:
        """Run the alternating solver `iterations` times from `_start`; returns (and stores) alpha."""
        d = torch.ones_like(w) if curvature is None else curvature
        alpha = self._start(w, d)
        for _ in range(self.iterations):
            b = self._grid(w, alpha)
            denominator = self._sum(d * b * b)
            alpha = torch.where(denominator > 0, self._sum(d * w * b) / denominator.clamp_min(_EPS), alpha)
            alpha = alpha.clamp_min(_EPS)
        self.alpha.copy_(alpha.reshape(self.alpha.shape))
        return alpha

    @torch.no_grad()
    def initialize(self, w: torch.Tensor) -> None:
        if w.is_meta:  # from_pretrained builds the model on the meta device; alpha comes from the checkpoint
            return
        self.solve(w)

    def _current_alpha(self, w: torch.Tensor) -> torch.Tensor:
        if self.training or not bool((self.alpha > 0).all()):
            return self.solve(w.detach(), self._curvature)
        return self.alpha

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        alpha = self._current_alpha(w)
        w_q = alpha * self._grid(w.detach(), alpha)
        return straight_through(w, w_q)

    @torch.no_grad()
    def codes(self, w: torch.Tensor):
        alpha = self.alpha if bool((self.alpha > 0).all()) else self.solve(w)
        k = grid_levels(self.bits)
        codes = torch.round(w / alpha * k).clamp(-k, k).to(torch.int8)
        return codes, alpha / k, None

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, iterations={self.iterations}"
