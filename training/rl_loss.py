"""The GRPO policy loss and its group-relative advantages.

Shapes: N = rollouts (queries x group size G), T = completion tokens.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def group_advantages(rewards: Tensor, group_size: int, eps: float = 1e-4) -> Tensor:
    """Normalise rewards within each query's group: (r - mean) / (std + eps).

    rewards: (N,) query-major (rows i*G .. i*G+G-1 share a query). Returns (N,);
    a group whose rollouts all earned the same reward gets zero advantages.

    >>> [round(a, 3) for a in group_advantages(torch.tensor([1.0, 0.0, 0.5, 0.5]), 2).tolist()]
    [0.707, -0.707, 0.0, 0.0]
    """
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    r = rewards.float().view(-1, group_size)  # (N / G, G)
    mean = r.mean(dim=1, keepdim=True)
    std = r.std(dim=1, keepdim=True, unbiased=True) if group_size > 1 else torch.zeros_like(r)
    adv = torch.where(std > 0, (r - mean) / (std + eps), torch.zeros_like(r))
    return adv.view(-1)  # (N,)


def token_kl(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Per-token estimate of KL(policy || reference) from sampled tokens (k3, never negative).

    logp, ref_logp: (N, T) log-probs of the sampled tokens. Returns (N, T).
    """
    log_ratio = ref_logp - logp
    return torch.exp(log_ratio) - log_ratio - 1.0


class GRPOLoss(nn.Module):
    """Clipped importance-ratio policy loss plus beta * KL to the frozen reference.

    Each rollout's token losses are averaged over its sampled tokens, then rollouts
    are averaged, so a long completion counts as much as a short one.
    """

    def __init__(self, clip_eps: float = 0.2, kl_beta: float = 0.05) -> None:
        super().__init__()
        if not 0.0 < clip_eps < 1.0:
            raise ValueError(f"clip_eps={clip_eps}: use a value in (0, 1), e.g. 0.2")
        if kl_beta < 0:
            raise ValueError(f"kl_beta={kl_beta}: must be >= 0")
        self.clip_eps = clip_eps
        self.kl_beta = kl_beta

    def forward(
        self, logp: Tensor, old_logp: Tensor, ref_logp: Tensor, advantages: Tensor, mask: Tensor
    ) -> Tensor:
        """Return the scalar loss.

        logp: (N, T) current policy (with grad); old_logp: (N, T) the policy that
        sampled (no grad); ref_logp: (N, T) reference (no grad); advantages: (N,);
        mask: (N, T) 1 on sampled tokens, 0 on prompt padding and forced tokens.
        """
        ratio = torch.exp(logp - old_logp)  # (N, T)
        adv = advantages.unsqueeze(1)  # (N, 1)
        clipped = torch.clamp(ratio, 1.0 - self.clip_eps, 1.0 + self.clip_eps)
        policy = -torch.minimum(ratio * adv, clipped * adv)  # (N, T)
        per_token = policy + self.kl_beta * token_kl(logp, ref_logp)  # (N, T)
        per_rollout = (per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # (N,)
        return per_rollout.mean()


__all__ = ["GRPOLoss", "group_advantages", "token_kl"]
