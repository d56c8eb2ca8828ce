"""Constraint layers: map a raw fine-grid output z and the coarse input x to a fine field y.

Every layer works on tensors shaped ``[..., H, W]`` (fine) and ``[..., h, w]`` (coarse) with
``H = f h`` and ``W = f w`` for an integer factor f, in **physical units** (kg m-2). Block weights
``w`` are fine-cell areas normalised within each f x f block (``sum_i w_i = 1``; see
:func:`climdown.grid.block_weights`); ``None`` means equal weights, in which case every layer
reduces exactly to the reference code's AvgPool2d form. A layer conserves mass when

    sum_i w_i y_i = x   for every coarse block,

which on the sphere is the statement that the fine cells hold the mass of their coarse cell.

=========  ===================================================  ==========  =========
name       formula                                              conserving  positive
=========  ===================================================  ==========  =========
none       y = z                                                no          no
softmax    y_i = x exp(z_i) / sum_j w_j exp(z_j)                yes         yes (x>=0)
add        y_i = z_i + (x - sum_j w_j z_j)                      yes         no
mult       y_i = z_i x / sum_j w_j z_j   (z >= 0)               yes         yes (x, z>=0)
scadd      y_i = z_i + d (s + z_i) / (s + zbar), d = x - zbar,  yes         no
           s = sign(zbar - x), zbar = sum_j w_j z_j
clip       y = max(z, 0)                                        no          yes
soft       y = z; loss + lambda * mean((coarsen(y) - x)^2)       no          no
=========  ===================================================  ==========  =========

The maths uses reshapes and broadcasting from :mod:`climdown.grid` (no Kronecker products with a
ones matrix, no loops, no device strings), so the layers run on CPU, CUDA and MPS alike.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from climdown.errors import ConfigError, DataValueError
from climdown.grid import as_blocks, block_sum, from_blocks, infer_factor

__all__ = [
    "Constraint",
    "NoConstraint",
    "SoftmaxConstraint",
    "AddConstraint",
    "MultConstraint",
    "ScAddConstraint",
    "ClipConstraint",
    "SoftConstraint",
    "CONSTRAINTS",
    "EXPECTS",
    "get_constraint",
    "infer_factor",
    "block_mean",
]


def block_mean(z: torch.Tensor, factor: int, weights: torch.Tensor | None) -> torch.Tensor:
    """Weighted block mean ``sum_i w_i z_i`` (w normalised per block), or the plain mean if None."""
    if weights is None:
        return block_sum(z, factor) / factor**2
    return block_sum(weights * z, factor)


# The layers work on block views [..., h, f, w, f] (climdown.grid.as_blocks): a coarse value
# x[..., :, None, :, None] broadcasts over its block, so nothing is block-expanded into a copy.
_BLOCK = (-3, -1)

#: What a layer can take as its raw input z (:attr:`Constraint.expects`).
EXPECTS = ("values", "logits", "positive")


def _bmean(zb: torch.Tensor, wb: torch.Tensor | None) -> torch.Tensor:
    """Block mean on views, kept as ``[..., h, 1, w, 1]`` for broadcasting."""
    if wb is None:
        return zb.mean(dim=_BLOCK, keepdim=True)
    return (wb * zb).sum(dim=_BLOCK, keepdim=True)


class Constraint(nn.Module):
    """Base class: a weight-free layer described by its constructor arguments.

    Attributes
    ----------
    name : str
        Registry name.
    conserving : bool
        True if ``sum_i w_i y_i = x`` holds by construction.
    positive : bool
        True if ``y >= 0`` whenever ``x >= 0`` (and, for ``mult``, ``z >= 0``).
    expects : {"values", "logits", "positive"}
        What the layer takes as z, so that the normaliser and the baselines need not know the
        layer: ``"values"`` in physical units (the normaliser rescales the backbone's output),
        ``"logits"`` (dimensionless: never rescaled), or ``"positive"`` values in physical
        units, made non-negative by :meth:`activation` after rescaling.
    logits : bool
        ``expects == "logits"`` (set for every subclass from :attr:`expects`).
    """

    name = "base"
    conserving = False
    positive = False
    expects: ClassVar[str] = "values"
    #: The constructor option that weights a loss penalty the trainer adds (None: no penalty).
    penalty_option: ClassVar[str | None] = None
    logits: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.expects not in EXPECTS:
            raise TypeError(f"{cls.__name__}.expects must be one of {EXPECTS}, got {cls.expects!r}")
        cls.logits = cls.expects == "logits"

    def activation(self, z: torch.Tensor) -> torch.Tensor:
        """z in the form the layer expects, from z in physical units (identity but for ``mult``)."""
        return z

    def forward(
        self, z: torch.Tensor, x: torch.Tensor, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Apply the constraint.

        Parameters
        ----------
        z : Tensor ``[..., H, W]``
            Raw network output on the fine grid.
        x : Tensor ``[..., h, w]``
            Coarse input in physical units (kg m-2).
        weights : Tensor broadcastable to ``[..., H, W]``, optional
            Block-normalised area weights (:func:`climdown.grid.block_weights`); None = equal.

        Returns
        -------
        Tensor ``[..., H, W]`` in the units of x.
        """
        factor = infer_factor(z.shape, x.shape)
        wb = None if weights is None else as_blocks(weights, factor)
        return from_blocks(self._constrain(as_blocks(z, factor), x[..., :, None, :, None], wb))

    def _constrain(
        self, zb: torch.Tensor, xb: torch.Tensor, wb: torch.Tensor | None
    ) -> torch.Tensor:
        """The layer on block views: zb ``[..., h, f, w, f]``, xb ``[..., h, 1, w, 1]``."""
        raise NotImplementedError

    def penalty(
        self, y: torch.Tensor, x: torch.Tensor, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Extra loss term the trainer adds (zero except for ``soft``)."""
        return y.new_zeros(())

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


class NoConstraint(Constraint):
    """``y = z``: the unconstrained baseline."""

    name = "none"

    def _constrain(
        self, zb: torch.Tensor, xb: torch.Tensor, wb: torch.Tensor | None
    ) -> torch.Tensor:
        return zb


class SoftmaxConstraint(Constraint):
    """Softmax constraint layer (SmCL): ``y_i = x exp(z_i) / sum_j w_j exp(z_j)``.

    Conserving and positive for ``x >= 0``; ``x = 0`` gives exactly 0. The block maximum is
    subtracted before ``exp`` so z up to +-1e4 neither overflows nor underflows to 0/0.
    """

    name = "softmax"
    conserving = True
    positive = True
    expects = "logits"

    def _constrain(
        self, zb: torch.Tensor, xb: torch.Tensor, wb: torch.Tensor | None
    ) -> torch.Tensor:
        e = torch.exp(zb - zb.amax(dim=_BLOCK, keepdim=True).detach())
        return e * (xb / _bmean(e, wb))


class AddConstraint(Constraint):
    """Additive correction: ``y_i = z_i + (x - sum_j w_j z_j)``. Conserving, not positive."""

    name = "add"
    conserving = True

    def _constrain(
        self, zb: torch.Tensor, xb: torch.Tensor, wb: torch.Tensor | None
    ) -> torch.Tensor:
        return zb + (xb - _bmean(zb, wb))


class MultConstraint(Constraint):
    """Multiplicative correction: ``y_i = z_i x / sum_j w_j z_j`` on a non-negative z.

    A block whose z sums to zero (e.g. all ReLU-zero) has no shape to rescale: it gets the
    block-constant value x, which still conserves. Negative z raises, since the result would
    neither be positive nor stable; models pass z through softplus first (``activation``).

    ``raw=True`` is the reference code's form (its ``MultDownscaleConstraints``): z is used as
    it comes, without the softplus, and may be negative. It still conserves, but it is neither
    positive nor stable: a block mean near zero blows the block up (the reference's untrained
    models reach +-700 that way). It exists to reproduce the reference; do not train with it.
    """

    name = "mult"
    conserving = True
    positive = True
    expects = "positive"

    def __init__(self, raw: bool = False) -> None:
        super().__init__()
        self.raw = bool(raw)
        self.positive = not self.raw

    def activation(self, z: torch.Tensor) -> torch.Tensor:
        """Make z non-negative before the layer: ``softplus(z)`` (unchanged when ``raw``)."""
        return z if self.raw else nn.functional.softplus(z)

    def _constrain(
        self, zb: torch.Tensor, xb: torch.Tensor, wb: torch.Tensor | None
    ) -> torch.Tensor:
        if not self.raw and bool((zb < 0).any()):
            raise DataValueError(
                "the 'mult' constraint needs a non-negative z (it rescales z by x / mean z); "
                "pass z through softplus/ReLU first, or use 'softmax'"
            )
        s = _bmean(zb, wb)
        # a mean below tiny/eps holds subnormal z with only a few significant bits: its shape
        # cannot be trusted, so such blocks count as empty (block-constant x, still conserving)
        good = s.abs() > torch.finfo(s.dtype).tiny / torch.finfo(s.dtype).eps
        # z / mean(z) first: it is bounded by 1 / w_i, so a tiny block mean cannot overflow
        shape = zb / torch.where(good, s, torch.ones_like(s))
        return torch.where(good, shape * xb, xb.expand_as(zb))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, raw={self.raw}" if self.raw else super().extra_repr()


class ScAddConstraint(Constraint):
    """The reference's scaled additive form.

    ``y_i = z_i + d (s + z_i) / (s + zbar)`` with ``zbar = sum_j w_j z_j``, ``d = x - zbar`` and
    ``s = sign(zbar - x)``. Conserving because the weighted mean of ``s + z_i`` is ``s + zbar``.
    Where ``s + zbar`` vanishes the division is undefined; those blocks fall back to ``add``.
    """

    name = "scadd"
    conserving = True

    def _constrain(
        self, zb: torch.Tensor, xb: torch.Tensor, wb: torch.Tensor | None
    ) -> torch.Tensor:
        zbar = _bmean(zb, wb)
        d = xb - zbar
        s = torch.sign(-d)
        den = s + zbar
        ok = den.abs() > torch.finfo(den.dtype).eps
        scale = torch.where(ok, d / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(d))
        return zb + scale * (s + zb) + torch.where(ok, torch.zeros_like(d), d)


class ClipConstraint(Constraint):
    """``y = max(z, 0)``: positivity only, not conserving (a comparison baseline)."""

    name = "clip"
    positive = True

    def _constrain(
        self, zb: torch.Tensor, xb: torch.Tensor, wb: torch.Tensor | None
    ) -> torch.Tensor:
        return torch.clamp(zb, min=0.0)


class SoftConstraint(Constraint):
    """No change to y; the trainer adds ``lam * mean((coarsen(y) - x)^2)`` to the loss.

    The penalty is in physical units squared (kg m-2)^2 unless the trainer normalises it.
    """

    name = "soft"
    penalty_option = "lam"

    def __init__(self, lam: float = 1.0) -> None:
        super().__init__()
        self.lam = float(lam)

    def _constrain(
        self, zb: torch.Tensor, xb: torch.Tensor, wb: torch.Tensor | None
    ) -> torch.Tensor:
        return zb

    def penalty(
        self, y: torch.Tensor, x: torch.Tensor, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        factor = infer_factor(y.shape, x.shape)
        return self.lam * torch.mean((block_mean(y, factor, weights) - x) ** 2)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, lam={self.lam}"


CONSTRAINTS: dict[str, type[Constraint]] = {
    c.name: c
    for c in (
        NoConstraint,
        SoftmaxConstraint,
        AddConstraint,
        MultConstraint,
        ScAddConstraint,
        ClipConstraint,
        SoftConstraint,
    )
}


def get_constraint(name: str | Constraint | None, **kwargs: float) -> Constraint:
    """Constraint layer by name (``none``, ``softmax``, ``add``, ``mult``, ``scadd``, ``clip``, ``soft``).

    Raises
    ------
    ConfigError
        For an unknown name, listing the known ones.
    """
    if isinstance(name, Constraint):
        return name
    key = "none" if name is None else str(name).lower()
    if key not in CONSTRAINTS:
        raise ConfigError(
            f"unknown constraint {name!r}; choose one of {', '.join(sorted(CONSTRAINTS))}"
        )
    return CONSTRAINTS[key](**kwargs)
