"""The Search-R3 training objective on top of a causal LM.

:class:`EmbedLM` wraps the model so that one forward pass gives both what the
contrastive losses need (the final-norm state at ``<|embed_token|>``) and what
the LM and KL losses need (next-token logits at the response positions only: a
vocabulary-sized output at every position would dwarf the model's own memory).
Wrapping it as a module also lets DDP and FSDP see one forward call.

:class:`SFTObjective` combines the four losses of :mod:`training.losses` with the
weights of :class:`training.config.LossConfig`; RL keeps its contrastive part on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from training.config import LossConfig
from training.losses import (
    InfoNCELoss,
    ListwiseDistillationLoss,
    ResponseKLLoss,
    ResponseLMLoss,
    TripletMarginLoss,
    hardest_in_batch,
)
from training.modeling import token_positions


@dataclass
class EmbedLMOutput:
    """What one pass over a batch of prompts gives.

    embeddings: (B, D) final-norm states at the embed token, not normalised.
    logits: (L, R, V) next-token logits predicting the R response tokens of the first
        L <= B rows (None when none were asked for).
    targets: (L, R) those rows' response token ids (answer prefix, then the embed token).
    """

    embeddings: Tensor
    logits: Tensor | None
    targets: Tensor


class EmbedLM(nn.Module):
    """A causal LM read the Search-R3 way: embedding at the token plus response logits.

    ``n_response`` is the number of tokens of the response that ends each prompt
    ("The embedding is " then the embed token); the prompts must end at the token.
    """

    def __init__(self, model: nn.Module, token_id: int, n_response: int) -> None:
        super().__init__()
        self.model = model
        self.token_id = token_id
        self.n_response = n_response

    def hf_model(self) -> nn.Module:
        """The underlying transformers model (inside a peft wrapper when there is one)."""
        inner = self.model
        get_base = getattr(inner, "get_base_model", None)
        return get_base() if callable(get_base) else inner

    def adapters_off(self) -> Any:
        """A context in which the model runs without its LoRA adapters (peft models only)."""
        return self.model.disable_adapter()  # type: ignore[operator]

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, logit_rows: int | None = None
    ) -> EmbedLMOutput:
        """input_ids, attention_mask: (B, T), right-padded prompts ending at the token.

        ``logit_rows`` limits the response logits to the first rows (0: none; None:
        all): the output layer's vocabulary-wide product is most of a small model's cost.
        """
        hf = self.hf_model()
        hidden = hf.get_decoder()(  # type: ignore[operator]
            input_ids=input_ids, attention_mask=attention_mask
        ).last_hidden_state  # (B, T, H), after the final norm
        pos = token_positions(input_ids, attention_mask, self.token_id)  # (B,)
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        embeddings = hidden[rows, pos]  # (B, H)
        offsets = torch.arange(self.n_response, device=input_ids.device)  # (R,)
        target_pos = pos[:, None] - (self.n_response - 1) + offsets  # (B, R)
        if int(target_pos.min()) < 1:
            raise ValueError("a prompt is shorter than its response: render it with the template")
        n = input_ids.shape[0] if logit_rows is None else min(logit_rows, input_ids.shape[0])
        rows, target_pos = rows[:n], target_pos[:n]
        targets = input_ids[rows[:, None], target_pos]  # (L, R)
        if n == 0:
            return EmbedLMOutput(embeddings=embeddings, logits=None, targets=targets)
        states = hidden[rows[:, None], target_pos - 1]  # (L, R, H): each predicts the next
        out = hf.get_output_embeddings()(states)  # type: ignore[operator]  # (L, R, V)
        return EmbedLMOutput(embeddings=embeddings, logits=out, targets=targets)


@dataclass
class LossParts:
    """The weighted total and each part (unweighted), all scalars."""

    total: Tensor
    lm: Tensor
    kl: Tensor
    infonce: Tensor
    triplet: Tensor
    distill: Tensor
    cross: Tensor | None = None

    def floats(self) -> dict[str, float]:
        """Detached values for logging."""
        values = {
            "loss": float(self.total.detach()),
            "lm": float(self.lm.detach()),
            "kl": float(self.kl.detach()),
            "infonce": float(self.infonce.detach()),
            "triplet": float(self.triplet.detach()),
            "distill": float(self.distill.detach()),
        }
        if self.cross is not None:
            values["cross"] = float(self.cross.detach())
        return values


# Gathers (N, D) document embeddings from every process: returns all of them and
# the offset of this process's block. The identity for a single process.
Gather = Callable[[Tensor], tuple[Tensor, int]]


def no_gather(x: Tensor) -> tuple[Tensor, int]:
    """Single-process :data:`Gather`."""
    return x, 0


class SFTObjective:
    """LM + KL + InfoNCE + triplet (+ distillation), weighted as in :class:`LossConfig`."""

    def __init__(self, cfg: LossConfig) -> None:
        self.cfg = cfg
        self.lm = ResponseLMLoss()
        self.kl = ResponseKLLoss()
        self.infonce = InfoNCELoss(cfg.temperature)
        self.triplet = TripletMarginLoss(cfg.margin)
        self.distill = ListwiseDistillationLoss(cfg.distill_temperature, cfg.teacher_temperature)
        self.cross = ListwiseDistillationLoss(cfg.distill_temperature, cfg.cross_temperature)

    def __call__(
        self,
        queries: EmbedLMOutput,
        documents: EmbedLMOutput,
        ignore: Tensor,
        negatives_per_query: int,
        ref_query_logits: Tensor | None = None,
        gather: Gather = no_gather,
        teacher_scores: Tensor | None = None,
        cross_scores: tuple[Tensor, Tensor] | None = None,
    ) -> LossParts:
        """The loss of one micro-batch.

        queries: B query prompts, with logits; documents: B positives then B*K negatives.
        The LM and KL parts are taken on the queries' responses: the response is the
        same text after every prompt, and the queries' are the ones the model writes
        itself when it reasons.
        ignore: (B, B + B*K) bool, documents that are relevant but not the positive.
        ref_query_logits: (L, R, V) of the frozen base for the same query rows (None: no KL).
        teacher_scores: (B, B + B*K) the teacher's cosines of the same pairs (None: no
            distillation). Distillation uses this process's candidates only: the
            teacher scored those.
        cross_scores: ``(scores, known)``, both (B, B + B*K): the cross-encoder's scores
            and where it scored (each query's own positive and negatives); None: no
            cross-encoder distillation. Queries with fewer than 2 scored candidates are
            left out of that part.
        """
        zero = queries.embeddings.new_zeros(())
        lm = kl = zero
        if queries.logits is not None:
            logits = queries.logits.flatten(0, 1)  # (M, V), M = L * R
            if self.cfg.lm > 0:
                lm = self.lm(logits, queries.targets.flatten())
            if self.cfg.kl > 0 and ref_query_logits is not None:
                kl = self.kl(logits, ref_query_logits.flatten(0, 1))
        q = queries.embeddings  # (B, D)
        d = documents.embeddings  # (B + B*K, D)
        infonce = self._infonce(q, d, ignore, gather) if self.cfg.infonce > 0 else zero
        triplet = zero
        if self.cfg.triplet > 0:
            triplet = self._triplet(q, d, ignore, negatives_per_query)
        distill = zero
        if self.cfg.distill > 0:
            if teacher_scores is None:
                raise ValueError("loss.distill > 0 needs the teacher's scores of the batch")
            distill = self.distill(q, d, teacher_scores, ignore)
        cross = None
        if self.cfg.cross_distill > 0:
            if cross_scores is None:
                raise ValueError("loss.cross_distill > 0 needs the cross-encoder's scores")
            cross = self._cross(q, d, cross_scores)
        total = (
            self.cfg.lm * lm
            + self.cfg.kl * kl
            + self.cfg.infonce * infonce
            + self.cfg.triplet * triplet
            + self.cfg.distill * distill
            + (self.cfg.cross_distill * cross if cross is not None else zero)
        )
        return LossParts(
            total=total,
            lm=lm,
            kl=kl,
            infonce=infonce,
            triplet=triplet,
            distill=distill,
            cross=cross,
        )

    def _infonce(self, q: Tensor, d: Tensor, ignore: Tensor, gather: Gather) -> Tensor:
        """InfoNCE of q (B, D) against every process's documents d (B + B*K, D)."""
        b = q.shape[0]
        all_docs, offset = gather(d)  # (P * (B + B*K), D)
        wide = torch.zeros(b, all_docs.shape[0], dtype=torch.bool, device=q.device)
        wide[:, offset : offset + d.shape[0]] = ignore
        positives = offset + torch.arange(b, device=q.device)  # (B,)
        return self.infonce(q, all_docs, positives=positives, ignore=wide)

    def _triplet(self, q: Tensor, d: Tensor, ignore: Tensor, negatives_per_query: int) -> Tensor:
        """Triplet margin of q (B, D): its positive d[:B], its K negatives or else the
        hardest other positive in the batch."""
        b = q.shape[0]
        if negatives_per_query > 0:
            negs = d[b:].view(b, negatives_per_query, -1)  # (B, K, D)
        else:
            hardest = hardest_in_batch(q, d[:b], ignore[:, :b])  # (B,)
            negs = d[:b][hardest].unsqueeze(1)  # (B, 1, D)
        return self.triplet(q, d[:b], negs)

    def _cross(self, q: Tensor, d: Tensor, cross_scores: tuple[Tensor, Tensor]) -> Tensor:
        """Cross-encoder distillation over the queries with 2 or more scored candidates."""
        scores, known = cross_scores  # (B, B + B*K) each
        rows = known.sum(dim=1) >= 2  # (B,)
        if not bool(rows.any()):
            return q.new_zeros(())
        return self.cross(q[rows], d, scores[rows], ~known[rows])


class Reference:
    """The frozen reference's outputs, without gradient: its own frozen ``copy``, or
    (``copy`` None) the trained model with its LoRA adapters off.

    ``trained`` returns the trained module unwrapped (an :class:`EmbedLM` or a module
    with the same ``adapters_off``); it is called at each use, after accelerate's prepare.
    """

    def __init__(self, copy: nn.Module | None, trained: Callable[[], Any]) -> None:
        self.copy = copy
        self.trained = trained

    def __call__(self, *args: Any) -> Any:
        """The reference's forward pass over ``args`` (the trained module's arguments)."""
        with torch.no_grad():
            if self.copy is not None:
                return self.copy(*args)
            inner = self.trained()
            with inner.adapters_off():
                return inner(*args)


def gather_with_grad(x: Tensor) -> tuple[Tensor, int]:
    """All processes' ``x`` (N, D) concatenated; gradients flow through this process's block.

    The other blocks are copies without gradient: each process back-propagates its
    own documents, and DDP averages the gradients.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 0
    world, rank = dist.get_world_size(), dist.get_rank()
    blocks = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(blocks, x.detach().contiguous())
    blocks[rank] = x
    return torch.cat(blocks), rank * x.shape[0]


__all__ = [
    "EmbedLM",
    "EmbedLMOutput",
    "Gather",
    "LossParts",
    "Reference",
    "SFTObjective",
    "gather_with_grad",
    "no_gather",
]
