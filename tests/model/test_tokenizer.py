"""open_tokenizer: vocabulary-only loading, counts equal to the HF tokenizer's."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from sr3desk.errors import ModelError
from sr3desk.model.runtime import LlamaEmbedder
from sr3desk.model.tokenizer import TokenCounter, open_tokenizer


@pytest.mark.parametrize("model", ["tiny", "smollm2"])
def test_counts_match_the_hf_tokenizer(
    model: str,
    tiny_gguf: Path,
    tiny_qwen2_dir: Path,
    smollm2_dir: Path,
    passages: list[str],
) -> None:
    if model == "tiny":
        gguf, hf_dir = tiny_gguf, tiny_qwen2_dir
    else:
        gguf, hf_dir = smollm2_dir / "smollm2-sr3.Q8_0.gguf", smollm2_dir
    hf = Tokenizer.from_file(str(hf_dir / "tokenizer.json"))
    texts = [*passages, "naïve café — 東京 🐍", "  leading and trailing  ", ""]
    with open_tokenizer(gguf) as tok:
        assert isinstance(tok, TokenCounter)
        for text in texts:
            want = hf.encode(text, add_special_tokens=False).ids
            assert tok.tokenize(text) == want, text[:60]
            assert tok.count_tokens(text) == len(want)
            assert tok.detokenize(want) == text


def test_special_token_texts_are_single_tokens(tiny_gguf: Path) -> None:
    with open_tokenizer(tiny_gguf) as tok:
        embed_id = tok.info.embed_token_id
        assert tok.tokenize("<|embed_token|>") == [embed_id]
        assert embed_id not in tok.tokenize("<|embed_token|>", special=False)


def test_agrees_with_the_runtime(tiny_gguf: Path, tiny_embedder: LlamaEmbedder) -> None:
    with open_tokenizer(tiny_gguf) as tok:
        text = "The tokenizer and the runtime count alike."
        assert tok.count_tokens(text) == tiny_embedder.count_tokens(text)


def test_closed_and_bad_files(tiny_gguf: Path, tmp_path: Path) -> None:
    tok = open_tokenizer(tiny_gguf)
    tok.close()
    tok.close()
    with pytest.raises(ModelError, match="closed"):
        tok.count_tokens("x")
    with pytest.raises(ModelError, match="does not exist"):
        open_tokenizer(tmp_path / "missing.gguf")


def test_llama_logs_go_to_logging_not_stderr(
    tiny_gguf: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    with caplog.at_level(logging.DEBUG, logger="sr3desk.llama"):
        open_tokenizer(tiny_gguf).close()
    assert any(r.name == "sr3desk.llama" for r in caplog.records)
    assert capfd.readouterr().err == ""
