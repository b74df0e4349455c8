"""The four parts of the Search-R3 SFT loss, and a teacher's distillation, each a small module.

Shapes use B = queries in the batch, N = candidate documents, K = hard negatives
per query, D = embedding size, M = response tokens in the batch, V = vocabulary.
Embeddings may come in unnormalised: the contrastive losses normalise them, so
similarities are cosines as at inference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ResponseLMLoss(nn.Module):
    """Cross-entropy of the response tokens ("The embedding is <|embed_token|>.").

    Only the response is scored: the model must keep producing the format that
    ends in the embed token, not learn to predict the user's documents.
    """

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Mean negative log-likelihood per response token.

        logits: (M, V) at the positions that predict each response token.
        targets: (M,) the response token ids.
        Returns a scalar.
        """
        return F.cross_entropy(logits.float(), targets)


class ResponseKLLoss(nn.Module):
    """KL(model || frozen base) over the vocabulary at the response positions.

    Keeps the fine-tuned model's next-token distribution near the base model's
    where it writes the response, so it still generates the format (and, for RL,
    still reasons) the way the base did.
    """

    def forward(self, logits: Tensor, ref_logits: Tensor) -> Tensor:
        """Mean over positions of sum_v p(v) * (log p(v) - log q(v)).

        logits: (M, V) of the model being trained.
        ref_logits: (M, V) of the frozen base at the same positions (no grad).
        Returns a scalar, 0 when the two agree.
        """
        logp = F.log_softmax(logits.float(), dim=-1)  # (M, V)
        logq = F.log_softmax(ref_logits.float(), dim=-1)  # (M, V)
        kl = (logp.exp() * (logp - logq)).sum(dim=-1)  # (M,)
        return kl.mean()


class InfoNCELoss(nn.Module):
    """InfoNCE over cosine similarities: each query against every candidate document.

    The candidates are the batch's positives (in-batch negatives for the other
    queries) followed by any hard negatives; logits are cos / temperature.
    """

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature={temperature}: must be positive")
        self.temperature = temperature

    def forward(
        self,
        queries: Tensor,
        documents: Tensor,
        positives: Tensor | None = None,
        ignore: Tensor | None = None,
    ) -> Tensor:
        """Mean cross-entropy of picking each query's positive among the documents.

        queries: (B, D).
        documents: (N, D) with N >= B; by default query i's positive is document i.
        positives: (B,) index of each query's positive in documents (optional).
        ignore: (B, N) bool, True for documents that must not count as negatives for
            that query (another passage relevant to it, a duplicate); never the positive.
        Returns a scalar.
        """
        q = F.normalize(queries.float(), dim=-1)  # (B, D)
        d = F.normalize(documents.float(), dim=-1)  # (N, D)
        logits = q @ d.T / self.temperature  # (B, N)
        if positives is None:
            positives = torch.arange(q.shape[0], device=q.device)  # (B,)
        if ignore is not None:
            keep_pos = F.one_hot(positives, logits.shape[1]).bool()  # (B, N)
            logits = logits.masked_fill(ignore & ~keep_pos, float("-inf"))
        return F.cross_entropy(logits, positives)


class TripletMarginLoss(nn.Module):
    """Hinge on cosine: cos(q, d+) should beat cos(q, d-) by at least the margin."""

    def __init__(self, margin: float = 0.2) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, queries: Tensor, positives: Tensor, negatives: Tensor) -> Tensor:
        """Mean over queries and negatives of max(0, margin - cos(q, d+) + cos(q, d-)).

        queries: (B, D); positives: (B, D); negatives: (B, K, D) with K >= 1.
        Returns a scalar.
        """
        q = F.normalize(queries.float(), dim=-1)  # (B, D)
        p = F.normalize(positives.float(), dim=-1)  # (B, D)
        n = F.normalize(negatives.float(), dim=-1)  # (B, K, D)
        pos = (q * p).sum(-1, keepdim=True)  # (B, 1)
        neg = torch.einsum("bd,bkd->bk", q, n)  # (B, K)
        return F.relu(self.margin - pos + neg).mean()


class ListwiseDistillationLoss(nn.Module):
    """KL(teacher || student) between score distributions over each query's candidates.

    The teacher (a different model, another embedding width) gave a score per
    (query, candidate); the student's scores are its cosines. Each side becomes a
    softmax over the same candidates (the batch's positives and hard negatives) at its
    own temperature, and the student is pulled toward the teacher's whole ranking, not
    only its top pick. Only scores are compared, so no projection head is needed.
    """

    def __init__(self, student_temperature: float = 0.05, teacher_temperature: float = 0.05):
        super().__init__()
        for name, value in (("student", student_temperature), ("teacher", teacher_temperature)):
            if value <= 0:
                raise ValueError(f"{name} temperature={value}: must be positive")
        self.student_temperature = student_temperature
        self.teacher_temperature = teacher_temperature

    def forward(
        self,
        queries: Tensor,
        documents: Tensor,
        teacher_scores: Tensor,
        ignore: Tensor | None = None,
    ) -> Tensor:
        """Mean over queries of sum_j p_t(j) * (log p_t(j) - log p_s(j)).

        queries: (B, D) student query embeddings; documents: (N, D) student candidates.
        teacher_scores: (B, N) the teacher's scores (cosines) of the same pairs, no grad.
        ignore: (B, N) bool, candidates left out of both distributions for that query
            (another passage relevant to it); at least one candidate per row must stay.
        Returns a scalar, 0 when the two distributions agree.
        """
        q = F.normalize(queries.float(), dim=-1)  # (B, D)
        d = F.normalize(documents.float(), dim=-1)  # (N, D)
        student = q @ d.T / self.student_temperature  # (B, N)
        teacher = teacher_scores.float().detach() / self.teacher_temperature  # (B, N)
        if ignore is not None:
            student = student.masked_fill(ignore, float("-inf"))
            teacher = teacher.masked_fill(ignore, float("-inf"))
        log_ps = F.log_softmax(student, dim=-1)  # (B, N)
        log_pt = F.log_softmax(teacher, dim=-1)  # (B, N)
        terms = log_pt.exp() * (log_pt - log_ps)  # (B, N)
        if ignore is not None:
            terms = terms.masked_fill(ignore, 0.0)  # 0 * (-inf - -inf) would be nan
        return terms.sum(dim=-1).mean()


def hardest_in_batch(queries: Tensor, documents: Tensor, ignore: Tensor | None = None) -> Tensor:
    """Index of each query's most similar non-positive document in the batch.

    queries: (B, D); documents: (N, D), document i is query i's positive.
    ignore: (B, N) bool, documents that are not negatives for that query.
    Returns (B,) indices into documents (used when there are no mined negatives).
    """
    with torch.no_grad():
        sims = F.normalize(queries.float(), dim=-1) @ F.normalize(documents.float(), dim=-1).T
        eye = torch.zeros_like(sims, dtype=torch.bool)
        eye[:, : sims.shape[0]] = torch.eye(sims.shape[0], dtype=torch.bool, device=sims.device)
        banned = eye if ignore is None else eye | ignore
        return sims.masked_fill(banned, float("-inf")).argmax(dim=-1)


__all__ = [
    "InfoNCELoss",
    "ListwiseDistillationLoss",
    "ResponseKLLoss",
    "ResponseLMLoss",
    "TripletMarginLoss",
    "hardest_in_batch",
]
