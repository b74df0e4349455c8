"""The quick held-out check during training, on the torch model (SFT and RL alike).

The figures a model is reported and weighed by come from ``python -m
training.eval`` on the exported GGUF; this one tells a run, step by step, whether
it is going the right way.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from sr3desk.model.prompts import PromptSet
from training import modeling
from training.checkpoints import append_log
from training.config import Config
from training.data.beir import BeirSet, load_beir
from training.eval import score_run

if TYPE_CHECKING:
    from accelerate import Accelerator

log = logging.getLogger(__name__)

DEPTH = 100  # ranks kept per query: enough for Recall@100


def evaluate_embeddings(
    model: nn.Module, tokenizer: Any, data: BeirSet, cfg: Config, prompts: PromptSet
) -> dict[str, float]:
    """nDCG@10, Recall@10/100 and MRR@10 of the torch model on (part of) the held-out set.

    At most ``eval.max_queries`` queries; every passage of the corpus is ranked.
    """
    qids = data.judged_queries()
    if cfg.eval.max_queries:
        qids = qids[: cfg.eval.max_queries]
    ids = list(data.corpus)
    docs = modeling.embed_texts(
        model,  # type: ignore[arg-type]
        tokenizer,
        [data.corpus[i].full_text for i in ids],
        "document",
        prompts,
        cfg.eval.batch_size,
        cfg.model.max_document_tokens,
    )
    queries = modeling.embed_texts(
        model,  # type: ignore[arg-type]
        tokenizer,
        [data.queries[q] for q in qids],
        "query",
        prompts,
        cfg.eval.batch_size,
        cfg.model.max_query_tokens,
    )
    depth = min(DEPTH, len(ids))
    ranks = (queries @ docs.T).argsort(dim=1, descending=True)[:, :depth]
    run = {qid: [ids[i] for i in row] for qid, row in zip(qids, ranks.tolist(), strict=True)}
    return score_run(run, data, qids)


def evaluate_step(
    accelerator: Accelerator,
    model: nn.Module,
    tokenizer: Any,
    data: BeirSet,
    cfg: Config,
    prompts: PromptSet,
    out_dir: Path,
    step: int,
) -> dict[str, float] | None:
    """Evaluate ``model`` (the unwrapped HF model) on the main process and log the figures.

    Appends ``{"step": step, "eval": figures}`` to the run's log; every process
    waits for it. Returns the figures on the main process, None on the others.
    """
    metrics = None
    if accelerator.is_main_process:
        was_training = model.training
        model.eval()
        with torch.no_grad(), accelerator.autocast():
            metrics = evaluate_embeddings(model, tokenizer, data, cfg, prompts)
        model.train(was_training)
        log.info("eval step %d: %s", step, " ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        append_log(out_dir, {"step": step, "eval": metrics})
    accelerator.wait_for_everyone()
    return metrics


def load_heldout(cfg: Config) -> BeirSet | None:
    """The held-out set the run evaluates on, or None (``eval.enabled`` off, or no folder)."""
    if cfg.eval.enabled and cfg.data.heldout_path.is_dir():
        return load_beir(cfg.data.heldout_path, cfg.data.heldout_split)
    return None
