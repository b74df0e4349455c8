"""Rollouts (training/rl_rollout.py): packing, forcing and one-pass scoring agree with
the plain paths (embed_at_token on each unpadded sequence, a full log-softmax), and a
forced completion ends exactly as the app's runtime ends it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sr3desk.model.prompts import PromptSet, forced_tail
from training.modeling import embed_at_token, ensure_embed_token, load_model, render_prompts
from training.objective import EmbedLM
from training.rl_rollout import ReasonLM, generate_rollouts, policy_forward, stop_token_ids

QUERIES = ["read a file line by line", "sort a dict by value", "what is a coroutine?"]


@pytest.fixture(scope="module")
def tiny(tiny_qwen2_dir: Path) -> tuple:
    model, tok = load_model(tiny_qwen2_dir)
    token_id = ensure_embed_token(model, tok)
    return model, tok, token_id


def test_rollouts_pack_force_and_score_like_the_plain_paths(tiny: tuple) -> None:
    model, tok, token_id = tiny
    prompts = PromptSet()
    stops = stop_token_ids(tok, token_id)
    assert stops[0] == token_id and tok.convert_tokens_to_ids("<|im_end|>") in stops
    torch.manual_seed(0)
    budget = 5
    ro = generate_rollouts(model, tok, QUERIES, prompts, stops, 2, budget)
    n = len(QUERIES) * 2
    assert ro.input_ids.shape[0] == n and ro.action_mask.shape == ro.completion_ids.shape
    # A random model never writes the token: every row is forced, as in the app.
    assert ro.forced.all()
    assert (ro.n_generated <= budget).all()
    for row in range(n):
        real = ro.input_ids[row][ro.attention_mask[row].bool()]
        width = int(ro.attention_mask[row, : ro.prompt_width].sum())
        completion = real[width:].tolist()
        acted = int(ro.n_generated[row])
        assert ro.action_mask[row].sum() == acted  # forced tokens are not actions
        assert int(ro.input_ids[row, ro.embed_pos[row]]) == token_id
        assert int(ro.embed_pos[row]) == ro.prompt_width + len(completion) - 1
        tail = forced_tail(ro.texts[row], prompts.answer_prefix) + prompts.embed_token
        assert completion[acted:] == tok.encode(tail, add_special_tokens=False)
        assert ro.texts[row] == tok.decode(completion[:acted], skip_special_tokens=False)

    net = ReasonLM(EmbedLM(model, token_id, 5))
    with torch.no_grad():
        out = policy_forward(net, ro, temperature=0.7)
        for row in range(n):
            keep = ro.attention_mask[row].bool()
            ids = ro.input_ids[row][keep][None]
            want = embed_at_token(model, ids, torch.ones_like(ids), token_id)[0]
            assert torch.allclose(out.embeddings[row], want, atol=1e-4)
            # Log-probs of the sampled tokens from an unpadded full forward pass; 0 elsewhere.
            logits = model(input_ids=ids).logits[0] / 0.7
            width = int(ro.attention_mask[row, : ro.prompt_width].sum())
            acted = int(ro.n_generated[row])
            targets = ids[0, width : width + acted]
            full = torch.log_softmax(logits[width - 1 : width - 1 + acted], -1)
            want_logp = full.gather(1, targets[:, None])[:, 0]
            assert torch.allclose(out.logp[row, :acted], want_logp, atol=1e-4)
            assert (out.logp[row, acted:] == 0).all()


def test_written_token_ends_the_completion(tiny: tuple) -> None:
    """When the policy writes the token it is an action, and nothing is appended."""
    model, tok, token_id = tiny
    prompts = PromptSet()
    enc = tok(
        render_prompts(tok, QUERIES[:1], "reason"), add_special_tokens=False, return_tensors="pt"
    )
    row = model.get_output_embeddings().weight[token_id]
    saved = row.detach().clone()
    try:
        with torch.no_grad():  # point the token's output row at the prompt's last state
            hidden = model(**enc, output_hidden_states=True).hidden_states[-1][0, -1]
            row.copy_(1e3 * hidden / hidden.norm())
        stops = stop_token_ids(tok, token_id)
        ro = generate_rollouts(model, tok, QUERIES[:1], prompts, stops, 2, 4)
    finally:
        with torch.no_grad():
            row.copy_(saved)
    assert not ro.forced.any()
    assert ro.n_generated.tolist() == [1, 1]
    assert ro.texts == [prompts.embed_token] * 2
    assert ro.action_mask.sum(dim=1).tolist() == [1.0, 1.0]
    assert ro.embed_pos.tolist() == [ro.prompt_width] * 2
