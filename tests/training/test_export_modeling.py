"""training.modeling, the HF side the exporter and the trainers share (tiny-qwen2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from sr3desk.model.prompts import EMBED_TOKEN, ChatTemplate, PromptSet
from training import modeling

TEXTS = [
    "A short one.",
    "A much longer passage about the Python tutorial, classes, scopes and namespaces, "
    "written out so that its prompt is many tokens longer than the first one's.",
]


@pytest.fixture(scope="module")
def tiny(tiny_qwen2_dir: Path) -> tuple[Any, Any]:
    return modeling.load_model(tiny_qwen2_dir)


def test_prompts_are_the_apps(tiny: tuple[Any, Any]) -> None:
    _, tok = tiny
    app = ChatTemplate(tok.chat_template)
    rendered = modeling.render_prompts(tok, TEXTS, "document")
    assert rendered == [app.document_prompt(PromptSet(), t) for t in TEXTS]
    assert all(r.endswith("The embedding is " + EMBED_TOKEN) for r in rendered)
    reason = modeling.render_prompts(tok, TEXTS[:1], "reason")
    assert reason[0].endswith("<|im_start|>assistant\n")


def test_padded_batch_equals_one_by_one(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    token_id = modeling.embed_token_id(tok)
    assert token_id is not None
    batch = modeling.encode_prompts(tok, TEXTS, "query")
    mask = batch["attention_mask"]
    assert mask[0, -1] == 0 and mask[0, 0] == 1  # right padding
    with torch.no_grad():
        both = modeling.embed_at_token(model, batch["input_ids"], mask, token_id)
        singles = [
            modeling.embed_at_token(
                model,
                (enc := modeling.encode_prompts(tok, [t], "query"))["input_ids"],
                enc["attention_mask"],
                token_id,
            )[0]
            for t in TEXTS
        ]
    assert both.shape == (2, model.config.hidden_size)
    assert torch.allclose(both.norm(dim=1), torch.ones(2), atol=1e-5)
    for row, single in zip(both, singles, strict=True):
        assert torch.nn.functional.cosine_similarity(row, single, dim=0) > 0.99999
    assert torch.nn.functional.cosine_similarity(both[0], both[1], dim=0) < 0.99


def test_max_length_cuts_the_text_not_the_token(tiny: tuple[Any, Any]) -> None:
    _, tok = tiny
    batch = modeling.encode_prompts(tok, TEXTS, "document", max_length=40)
    token_id = modeling.embed_token_id(tok)
    assert token_id is not None
    assert batch["input_ids"].shape[1] <= 40
    pos = modeling.token_positions(batch["input_ids"], batch["attention_mask"], token_id)
    assert pos.tolist() == (batch["attention_mask"].sum(dim=1) - 1).tolist()


def test_missing_token_is_named(tiny: tuple[Any, Any]) -> None:
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    with pytest.raises(ValueError, match=r"rows \[0, 1\] have no embed token"):
        modeling.token_positions(ids, torch.ones_like(ids), 99)


def _without_embed_token(src: Path, dst: Path) -> Path:
    """Copy the tokenizer files of ``src`` with <|embed_token|> removed."""
    dst.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(src / name, dst / name)
    state = json.loads((dst / "tokenizer.json").read_text())
    state["added_tokens"] = [t for t in state["added_tokens"] if t["content"] != EMBED_TOKEN]
    (dst / "tokenizer.json").write_text(json.dumps(state))
    config = json.loads((dst / "tokenizer_config.json").read_text())
    config.pop("extra_special_tokens", None)
    (dst / "tokenizer_config.json").write_text(json.dumps(config))
    return dst


@pytest.mark.parametrize("spare_rows", [0, 290])
def test_ensure_embed_token_adds_and_initialises(
    tiny_qwen2_dir: Path, tmp_path: Path, spare_rows: int
) -> None:
    """The token is added once; its input and (untied) output rows start at ' embedding'."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = modeling.load_tokenizer(_without_embed_token(tiny_qwen2_dir, tmp_path / "tok"))
    assert modeling.embed_token_id(tok) is None
    n = len(tok)
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=n + spare_rows,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=False,
    )
    model: Any = Qwen2ForCausalLM(config)
    assert modeling.ensure_embed_token(model, tok) == n
    assert tok.convert_ids_to_tokens(n) == EMBED_TOKEN
    assert tok.encode("x " + EMBED_TOKEN, add_special_tokens=False)[-1] == n  # never split
    rows = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    assert rows.shape[0] == head.shape[0] == max(n + 1, n + spare_rows)  # grows only if needed
    word = tok.encode(modeling.INIT_WORD, add_special_tokens=False)
    assert torch.allclose(rows[n], rows[word].mean(dim=0))
    assert torch.allclose(head[n], head[word].mean(dim=0))

    # A second call changes nothing: a trained row is kept.
    with torch.no_grad():
        rows[n] += 1.0
    before = rows[n].clone()
    assert modeling.ensure_embed_token(model, tok) == n
    assert torch.equal(model.get_input_embeddings().weight[n], before)
    assert len(tok) == n + 1
