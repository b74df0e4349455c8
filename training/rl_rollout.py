"""Rollouts for RL: sample reasoning that ends in ``<|embed_token|>``, then score it.

A rollout is one sampled completion of the reasoning prompt (``REASON_SYSTEM``,
:meth:`ChatTemplate.reason_prompt`). Generation is batched: every query's prompt
is repeated ``group_size`` times and sampled in one ``generate`` call that stops
at the embed token or at the end of the turn. A completion that did not emit the
token within its budget gets the forced tail (:func:`forced_tail`: the answer
prefix, then the token), as the app does, so every rollout has an embedding; the forced
tokens are not the policy's actions and are masked out of the policy loss.

Rollouts are packed as ``[left-padded prompt | completion, right-padded]`` so one
forward pass through the (possibly DDP-wrapped) model gives both the log-probs of
the sampled tokens (vocabulary-sized logits only at those positions) and the
final-norm state at each embed token. :func:`score_rollouts` then rewards each
rollout by the rank of its query's positives among the environment's candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from sr3desk.model.prompts import PromptSet, forced_tail
from training.config import RLConfig
from training.env import CorpusEnv
from training.modeling import render_prompts
from training.objective import EmbedLM, EmbedLMOutput
from training.rewards import combined_reward, format_reward, rank_reward

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# Turn-ending tokens of the chat templates we train (ChatML and its relatives).
END_OF_TURN = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "</s>")


@dataclass
class Rollouts:
    """``N = queries * group_size`` sampled completions, packed for one forward pass.

    input_ids, attention_mask: (N, P + T): prompt left-padded to width P, then the
    completion (and forced suffix) right-padded to T. action_mask: (N, T) float, 1
    on the tokens the policy sampled (the embed token included when it wrote it).
    embed_pos: (N,) position of each row's embed token. forced: (N,) bool.
    n_generated: (N,) sampled tokens per row. texts: each completion as text
    (special tokens kept; the forced suffix not included).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    action_mask: torch.Tensor
    embed_pos: torch.Tensor
    forced: torch.Tensor
    n_generated: torch.Tensor
    texts: list[str]
    prompt_width: int
    group_size: int

    @property
    def completion_ids(self) -> torch.Tensor:
        """(N, T) the completion region of ``input_ids``."""
        return self.input_ids[:, self.prompt_width :]


def stop_token_ids(tokenizer: PreTrainedTokenizerBase, embed_id: int) -> list[int]:
    """Return the ids that end generation: the embed token first, then end-of-turn tokens."""
    vocab = tokenizer.get_vocab()
    ids = [embed_id]
    for token in (*END_OF_TURN, tokenizer.eos_token):
        if token and token in vocab and vocab[token] not in ids:
            ids.append(vocab[token])
    return ids


@torch.no_grad()
def generate_rollouts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    queries: Sequence[str],
    prompts: PromptSet,
    stops: Sequence[int],
    group_size: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
) -> Rollouts:
    """Sample ``group_size`` reasoning completions for each query in one batched call.

    ``model`` is the unwrapped HF model (generation needs no gradient sync);
    ``stops`` are :func:`stop_token_ids` (the embed token first). Rows are
    query-major: rows ``i*G .. i*G+G-1`` belong to ``queries[i]``.
    """
    device = next(model.parameters()).device
    texts = render_prompts(tokenizer, queries, "reason", prompts)
    enc = tokenizer(
        texts, add_special_tokens=False, padding=True, padding_side="left", return_tensors="pt"
    )
    prompt_ids = enc["input_ids"].repeat_interleave(group_size, dim=0).to(device)  # (N, P)
    prompt_mask = enc["attention_mask"].repeat_interleave(group_size, dim=0).to(device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[-1]
    was_training = model.training
    model.eval()
    out = model.generate(  # type: ignore[operator]
        input_ids=prompt_ids,
        attention_mask=prompt_mask,
        do_sample=True,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,  # 0 turns top-k off (None would mean the config's 50)
        max_new_tokens=max_new_tokens,
        eos_token_id=list(stops),
        pad_token_id=pad_id,
        use_cache=True,
    )
    model.train(was_training)
    sampled = out[:, prompt_ids.shape[1] :].tolist()  # (N, <= max_new_tokens)
    completions, actions, forced = complete(sampled, tokenizer, prompts, stops)
    texts_out = [
        str(tokenizer.decode(c[:a], skip_special_tokens=False))
        for c, a in zip(completions, actions, strict=True)
    ]
    ids, mask, width = pack(prompt_ids.tolist(), prompt_mask.tolist(), completions, pad_id)
    action_mask = torch.zeros(len(completions), ids.shape[1] - width)
    for r, a in enumerate(actions):
        action_mask[r, :a] = 1.0
    embed_pos = torch.tensor([width + len(c) - 1 for c in completions])
    return Rollouts(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        action_mask=action_mask.to(device),
        embed_pos=embed_pos.to(device),
        forced=torch.tensor(forced, device=device),
        n_generated=torch.tensor(actions, device=device),
        texts=texts_out,
        prompt_width=width,
        group_size=group_size,
    )


def complete(
    sampled: list[list[int]],
    tokenizer: PreTrainedTokenizerBase,
    prompts: PromptSet,
    stops: Sequence[int],
) -> tuple[list[list[int]], list[int], list[bool]]:
    """Cut each sampled row at its first stop token and give it the embed token.

    Returns ``(completions, actions, forced)``: each row's completion token ids (ending
    at the embed token), how many of them the policy sampled, and whether the tail
    was forced (:func:`forced_tail`) because the row had not written the token.
    """
    embed_id = stops[0]
    completions: list[list[int]] = []
    actions: list[int] = []
    forced: list[bool] = []
    for row in sampled:
        cut = next((j for j, t in enumerate(row) if t in stops), None)
        if cut is not None and row[cut] == embed_id:
            completions.append(row[: cut + 1])  # the model wrote the token itself
            actions.append(cut + 1)
            forced.append(False)
        else:
            # Budget spent or the turn ended (the end token dropped): append the answer
            # prefix and the token exactly as the app's runtime does.
            kept = row if cut is None else row[:cut]
            reasoning = str(tokenizer.decode(kept, skip_special_tokens=False))
            tail = forced_tail(reasoning, prompts.answer_prefix) + prompts.embed_token
            completions.append(kept + tokenizer.encode(tail, add_special_tokens=False))
            actions.append(len(kept))
            forced.append(True)
    return completions, actions, forced


def pack(
    prompt_ids: list[list[int]],
    prompt_mask: list[list[int]],
    completions: list[list[int]],
    pad_id: int,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Join left-padded prompts (all width P) with right-padded completions.

    Returns ``(input_ids, attention_mask, P)``, both (N, P + T) long.
    """
    width = len(prompt_ids[0])
    t = max(len(c) for c in completions)
    ids = torch.full((len(completions), width + t), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, (p, m, c) in enumerate(zip(prompt_ids, prompt_mask, completions, strict=True)):
        ids[r, :width] = torch.tensor(p)
        mask[r, :width] = torch.tensor(m)
        ids[r, width : width + len(c)] = torch.tensor(c, dtype=torch.long)
        mask[r, width : width + len(c)] = 1
    return ids, mask, width


@dataclass
class PolicyOutput:
    """What one forward pass over rollouts gives.

    logp: (N, T) log-prob of each sampled completion token under the model (at
    the sampling temperature), 0 off the actions; embeddings: (N, d) L2-normalised
    states at the tokens.
    """

    logp: torch.Tensor
    embeddings: torch.Tensor


class ReasonLM(nn.Module):
    """The model as RL runs it: over rollouts, and over prompts that end at the token.

    One module so that DDP sees every forward pass: given an ``action_mask`` it
    reads rollouts and returns :class:`PolicyOutput`; without one it is the SFT
    objective's :class:`~training.objective.EmbedLM` (right-padded prompts ending
    at the token).
    """

    def __init__(self, embed_lm: EmbedLM) -> None:
        super().__init__()
        self.embed_lm = embed_lm

    def hf_model(self) -> nn.Module:
        """The transformers model inside (the peft-wrapped base when LoRA is on)."""
        return self.embed_lm.hf_model()

    def adapters_off(self) -> Any:
        """A context in which the model runs without its LoRA adapters (peft models only)."""
        return self.embed_lm.adapters_off()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        embed_pos: torch.Tensor | None = None,
        action_mask: torch.Tensor | None = None,
        temperature: float = 1.0,
    ) -> PolicyOutput | EmbedLMOutput:
        """Rollouts: input_ids, attention_mask (N, P + T) left-padded prompts then
        completions; embed_pos (N,); action_mask (N, T). Prompts: (B, L), no mask."""
        if action_mask is None:
            return self.embed_lm(input_ids, attention_mask)
        if embed_pos is None:
            raise ValueError("rollouts need embed_pos")
        hf = self.hf_model()
        hidden = hf.get_decoder()(  # type: ignore[operator]
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=(attention_mask.cumsum(dim=1) - 1).clamp(min=0),  # left padding
            use_cache=False,
        ).last_hidden_state  # (N, P + T, d), after the final norm
        t = action_mask.shape[1]
        picked = action_mask.bool()  # (N, T)
        # Vocabulary-sized logits only where the policy acted (not prompt, pad or forced).
        states = hidden[:, -t - 1 : -1][picked]  # (M, d): each predicts the next token
        logits = hf.get_output_embeddings()(states).float() / temperature  # type: ignore[operator]
        targets = input_ids[:, -t:][picked]  # (M,)
        # log_softmax gathered at the targets, without a second (M, V) tensor.
        picked_logp = logits.gather(-1, targets[:, None])[:, 0] - logits.logsumexp(-1)  # (M,)
        logp = torch.zeros(picked.shape, dtype=picked_logp.dtype, device=picked_logp.device)
        logp[picked] = picked_logp  # (N, T), 0 off the actions
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        emb = F.normalize(hidden[rows, embed_pos].float(), dim=-1)  # (N, d)
        return PolicyOutput(logp=logp, embeddings=emb)


def policy_forward(net: Any, rollouts: Rollouts, temperature: float = 1.0) -> PolicyOutput:
    """Run ``net`` (a :class:`ReasonLM`, possibly DDP-wrapped) over ``rollouts``."""
    out = net(
        rollouts.input_ids,
        rollouts.attention_mask,
        rollouts.embed_pos,
        rollouts.action_mask,
        temperature,
    )
    assert isinstance(out, PolicyOutput)
    return out


__all__ = [
    "PolicyOutput",
    "ReasonLM",
    "Rollouts",
    "complete",
    "generate_rollouts",
    "pack",
    "policy_forward",
    "stop_token_ids",
]


@dataclass
class Scored:
    """Rewards of N rollouts and what the contrastive parts take from the candidates."""

    rewards: torch.Tensor  # (N,)
    rank: list[float]
    fmt: list[float]
    negatives: list[list[int]]  # per query: hardest non-relevant passages, best first


def score_rollouts(
    env: CorpusEnv,
    queries: torch.Tensor,
    relevant: Sequence[set[int]],
    rollouts: Rollouts,
    prompts: PromptSet,
    r: RLConfig,
) -> Scored:
    """Reward each rollout from the (refreshed) cache: rank of its positives + format.

    queries: (N, d) rollout embeddings, query-major; relevant: per query, the corpus
    rows of its positives. The candidates are the top ``r.candidates`` cached
    passages plus the positives (so a positive outside the top still has a rank).
    """
    g = r.group_size
    top = env.retrieve(queries, r.candidates)
    rewards, ranks, fmts = [], [], []
    best: list[dict[int, float]] = [{} for _ in relevant]
    for row in range(queries.shape[0]):
        qi = row // g
        ids = list(dict.fromkeys(top.ids[row].tolist() + sorted(relevant[qi])))
        scores = env.scores(queries[row : row + 1], torch.tensor([ids])).squeeze(0).tolist()
        flags = [i in relevant[qi] for i in ids]
        rank = rank_reward(scores, flags, r.reward)
        fmt = format_reward(
            rollouts.texts[row],
            int(rollouts.n_generated[row]),
            r.max_reason_tokens,
            prompts.embed_token,
            prompts.answer_prefix,
        )
        rewards.append(combined_reward(rank, fmt, r.format_weight))
        ranks.append(rank)
        fmts.append(fmt)
        for i, s in zip(ids, scores, strict=True):
            if i not in relevant[qi]:
                best[qi][i] = max(s, best[qi].get(i, -2.0))
    negatives = [sorted(b, key=lambda i: -b[i])[: r.negatives] for b in best]
    return Scored(torch.tensor(rewards), ranks, fmts, negatives)
