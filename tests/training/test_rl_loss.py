"""The GRPO loss and group advantages (training/rl_loss.py) on hand-computed cases."""

from __future__ import annotations

import doctest
import math

import pytest
import torch

from training import rl_loss
from training.rl_loss import GRPOLoss, group_advantages, token_kl


def test_doctests() -> None:
    assert doctest.testmod(rl_loss).failed == 0


def test_group_advantages_by_hand() -> None:
    # Group 1: rewards 0, 1, 2 -> mean 1, sample std 1 -> -1, 0, 1. Group 2: all equal -> 0.
    adv = group_advantages(torch.tensor([0.0, 1.0, 2.0, 0.3, 0.3, 0.3]), 3, eps=0.0)
    assert adv.tolist()[:3] == pytest.approx([-1.0, 0.0, 1.0])
    assert adv.tolist()[3:] == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="groups of 4"):
        group_advantages(torch.zeros(6), 4)


def test_token_kl_is_k3_and_never_negative() -> None:
    logp = torch.log(torch.tensor([[0.5, 0.2]]))
    ref = torch.log(torch.tensor([[0.25, 0.2]]))
    # k3 = q/p - log(q/p) - 1 with q/p = 0.5 for the first token, 1 for the second.
    assert token_kl(logp, ref).tolist()[0] == pytest.approx([0.5 - math.log(0.5) - 1, 0.0])
    assert (token_kl(torch.randn(4, 5), torch.randn(4, 5)) >= 0).all()


def test_grpo_loss_by_hand() -> None:
    loss_fn = GRPOLoss(clip_eps=0.2, kl_beta=0.0)
    # On-policy (ratio 1): loss = -mean over rollouts of their advantage.
    logp = torch.log(torch.tensor([[0.5, 0.5], [0.25, 0.25]]))
    adv = torch.tensor([1.0, -3.0])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    assert float(loss_fn(logp, logp, logp, adv, mask)) == pytest.approx(1.0)
    # Ratio 2 with a positive advantage is clipped to 1.2; with a negative one it is not.
    old = logp - math.log(2.0)
    pos = float(loss_fn(logp, old, logp, torch.tensor([1.0, 1.0]), mask))
    neg = float(loss_fn(logp, old, logp, torch.tensor([-1.0, -1.0]), mask))
    assert pos == pytest.approx(-1.2) and neg == pytest.approx(2.0)
    # Masked tokens count for nothing: the second rollout's second token is ignored.
    odd = logp.clone()
    odd[1, 1] = -50.0
    assert float(loss_fn(odd, odd.detach(), odd, adv, mask)) == pytest.approx(1.0)
    # The KL part: beta * mean k3 over sampled tokens.
    with_kl = GRPOLoss(clip_eps=0.2, kl_beta=0.5)
    ref = logp + math.log(0.5)
    want = 1.0 + 0.5 * (0.5 - math.log(0.5) - 1)
    assert float(with_kl(logp, logp, ref, adv, mask)) == pytest.approx(want)


def test_gradient_pushes_toward_better_rollouts() -> None:
    logits = torch.zeros(2, 3, requires_grad=True)  # two rollouts, one token each, vocab 3
    tokens = torch.tensor([[0], [1]])
    logp = torch.log_softmax(logits, -1).gather(1, tokens)  # (2, 1)
    loss = GRPOLoss(kl_beta=0.0)(
        logp, logp.detach(), logp.detach(), torch.tensor([1.0, -1.0]), torch.ones(2, 1)
    )
    loss.backward()
    assert logits.grad is not None
    assert logits.grad[0, 0] < 0 < logits.grad[1, 1]  # descent raises token 0, lowers token 1


def test_grpo_loss_checks_its_settings() -> None:
    with pytest.raises(ValueError, match="clip_eps"):
        GRPOLoss(clip_eps=0.0)
    with pytest.raises(ValueError, match="kl_beta"):
        GRPOLoss(kl_beta=-0.1)
