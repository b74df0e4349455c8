"""Each loss on a case small enough to compute by hand."""

from __future__ import annotations

import math

import pytest
import torch

from training.losses import (
    InfoNCELoss,
    ResponseKLLoss,
    ResponseLMLoss,
    TripletMarginLoss,
    hardest_in_batch,
)


def test_lm_loss_is_mean_negative_log_likelihood() -> None:
    # Two positions over a vocabulary of 3: uniform logits, then a sure prediction.
    logits = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, math.log(8.0)]])
    targets = torch.tensor([1, 2])
    # -log(1/3) and -log(8/10)
    expected = (math.log(3.0) - math.log(0.8)) / 2
    assert ResponseLMLoss()(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_kl_is_zero_for_equal_and_matches_the_formula() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    assert ResponseKLLoss()(logits, logits.clone()).item() == pytest.approx(0.0, abs=1e-7)
    # p = (1/2, 1/2), q = (1/5, 4/5): KL = 1/2 ln(5/2) + 1/2 ln(5/8)
    p = torch.log(torch.tensor([[0.5, 0.5]]))
    q = torch.log(torch.tensor([[0.2, 0.8]]))
    expected = 0.5 * math.log(2.5) + 0.5 * math.log(0.625)
    assert ResponseKLLoss()(p, q).item() == pytest.approx(expected, rel=1e-6)


def test_infonce_on_orthogonal_vectors() -> None:
    # Two queries, three documents (two positives then a negative), unit vectors.
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    d = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    tau = 0.5
    # query 0 sims: 1, 0, -1 -> logits 2, 0, -2; query 1 sims: 0, 1, 0 -> 0, 2, 0
    l0 = -2 + math.log(math.exp(2) + 1 + math.exp(-2))
    l1 = -2 + math.log(1 + math.exp(2) + 1)
    loss = InfoNCELoss(tau)(q * 3.0, d)  # scale must not matter: cosines
    assert loss.item() == pytest.approx((l0 + l1) / 2, rel=1e-6)


def test_infonce_ignore_masks_false_negatives_but_never_the_positive() -> None:
    q = torch.tensor([[1.0, 0.0]])
    d = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    ignore = torch.tensor([[True, True, False]])  # doc 1 is relevant too; doc 0 is the positive
    tau = 1.0
    expected = -1 + math.log(math.exp(1) + 1)  # doc 1 left out, doc 0 kept
    loss = InfoNCELoss(tau)(q, d, ignore=ignore)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_infonce_explicit_positive_index() -> None:
    q = torch.tensor([[0.0, 1.0]])
    d = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss = InfoNCELoss(1.0)(q, d, positives=torch.tensor([1]))
    assert loss.item() == pytest.approx(-1 + math.log(1 + math.e), rel=1e-6)


def test_triplet_margin_on_cosine() -> None:
    q = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    pos = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # cos 1 and 1/sqrt(2)
    neg = torch.tensor([[[0.0, 1.0]], [[1.0, 0.0]]])  # cos 0 and 1
    # row 0: max(0, 0.2 - 1 + 0) = 0; row 1: 0.2 - 0.7071 + 1 = 0.4929
    expected = (0.0 + (0.2 - 1 / math.sqrt(2) + 1.0)) / 2
    assert TripletMarginLoss(0.2)(q, pos, neg).item() == pytest.approx(expected, rel=1e-6)


def test_hardest_in_batch_skips_the_positive_and_ignored() -> None:
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    d = torch.tensor([[1.0, 0.1], [0.9, 0.2], [1.0, 0.0]])
    assert hardest_in_batch(q, d).tolist() == [2, 0]
    ignore = torch.tensor([[False, False, True], [False, False, False]])
    assert hardest_in_batch(q, d, ignore).tolist() == [1, 0]


def test_gradients_flow_to_both_sides() -> None:
    q = torch.randn(4, 8, requires_grad=True)
    d = torch.randn(8, 8, requires_grad=True)
    loss = InfoNCELoss(0.05)(q, d) + TripletMarginLoss(0.5)(q, d[:4], d[4:].unsqueeze(1))
    loss.backward()
    assert q.grad is not None and d.grad is not None
    assert q.grad.abs().sum() > 0 and d.grad.abs().sum() > 0
