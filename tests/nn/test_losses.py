"""Tests of the training losses: MSE, the GAN's adversarial terms and the soft penalty."""

from __future__ import annotations

import math

import torch

from climdown.nn.losses import (
    adversarial_loss,
    discriminator_loss,
    generator_loss,
    mse_loss,
    soft_penalty,
)
from climdown.nn.models import get_model


def test_mse_is_the_mean_square_difference():
    a = torch.tensor([1.0, 2.0, 3.0])
    b = torch.tensor([1.0, 0.0, 6.0])
    assert math.isclose(float(mse_loss(a, b)), (0 + 4 + 9) / 3, rel_tol=1e-6)


def test_area_weighted_mse_weights_each_cell_by_its_area():
    pred = torch.zeros(2, 1, 1, 2, 2)
    truth = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).expand(2, 1, 1, 2, 2)
    area = torch.tensor([[1.0, 1.0], [3.0, 3.0]])  # [H, W], the same for every sample
    expected = (1 * 1 + 4 * 1 + 9 * 3 + 16 * 3) / 8
    assert math.isclose(float(mse_loss(pred, truth, area)), expected, rel_tol=1e-6)
    per_sample = torch.stack([area, 2 * area])  # [B, H, W]: the batch's areas, weighted together
    assert math.isclose(float(mse_loss(pred, truth, per_sample)), expected, rel_tol=1e-6)
    equal = torch.ones(2, 2)  # equal areas: the plain MSE
    assert math.isclose(float(mse_loss(pred, truth, equal)), float(mse_loss(pred, truth)))


def test_adversarial_loss_is_bce_with_logits():
    logits = torch.tensor([0.0, 0.0])
    assert math.isclose(float(adversarial_loss(logits, real=True)), math.log(2), rel_tol=1e-6)
    sure = torch.full((4,), 30.0)
    assert float(adversarial_loss(sure, real=True)) < 1e-12
    assert float(adversarial_loss(sure, real=False)) > 29  # stable: no inf for confident logits
    assert math.isfinite(float(adversarial_loss(torch.full((2,), 1e4), real=False)))


def test_generator_loss_is_mse_plus_one_percent_adversarial():
    pred, truth = torch.rand(2, 1, 1, 8, 8), torch.rand(2, 1, 1, 8, 8)
    d_fake = torch.randn(2, 1, 1, 1, 1)
    expected = mse_loss(pred, truth) + 0.01 * adversarial_loss(d_fake, real=True)
    torch.testing.assert_close(generator_loss(pred, truth, d_fake), expected)
    # a fooled discriminator (large logits on fakes) leaves only the MSE
    fooled = generator_loss(pred, truth, torch.full_like(d_fake, 50.0))
    torch.testing.assert_close(fooled, mse_loss(pred, truth))
    # and the weight is a parameter
    heavy = generator_loss(pred, truth, d_fake, adv_weight=1.0)
    assert float(heavy - generator_loss(pred, truth, d_fake)) > 0


def test_generator_loss_trains_the_generator_through_the_discriminator():
    pred = torch.rand(2, 1, 1, 8, 8, requires_grad=True)
    d_fake = (pred * 3.0).mean(dim=(-1, -2))  # a stand-in discriminator
    generator_loss(pred, torch.zeros_like(pred), d_fake, adv_weight=1.0).backward()
    mse_only = 2 * pred.detach() / pred.numel()
    assert not torch.allclose(pred.grad, mse_only)  # the adversarial term contributes


def test_discriminator_loss_rewards_telling_real_from_fake():
    perfect = discriminator_loss(torch.full((3,), 20.0), torch.full((3,), -20.0))
    fooled = discriminator_loss(torch.full((3,), -20.0), torch.full((3,), 20.0))
    unsure = discriminator_loss(torch.zeros(3), torch.zeros(3))
    assert float(perfect) < 1e-8
    assert float(fooled) > 19
    assert math.isclose(float(unsure), math.log(2), rel_tol=1e-6)


def test_soft_penalty_only_for_the_soft_constraint():
    lr = torch.rand(2, 1, 1, 4, 4) * 30
    y = torch.rand(2, 1, 1, 16, 16) * 30  # does not conserve lr
    soft = get_model("nearest", 4, "soft", scale=5.0, constraint_options={"lam": 0.5})
    block = y.reshape(2, 1, 1, 4, 4, 4, 4).mean(dim=(-3, -1))
    expected = 0.5 * torch.mean(((block - lr) / 5.0) ** 2)
    torch.testing.assert_close(soft_penalty(soft, y, lr), expected)
    for name in ("none", "softmax", "add"):  # contrast: other layers add no loss term
        assert float(soft_penalty(get_model("nearest", 4, name), y, lr)) == 0.0
