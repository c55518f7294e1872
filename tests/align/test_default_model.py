"""The shipped default model (llama2.c stories260K converted to transformers) and its converter.

Tests marked ``shared_data`` compare with the original files in ../shared/data/stories260K through the
numpy reference of llama2.c (scripts/llama2c.py, a development tool outside the installed packages); the others
need only the shipped files.
"""

from __future__ import annotations

import importlib.util
import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "scripts"))

from llama2c import (  # noqa: E402
    DEFAULT_MODEL_DIR,
    DOCUMENTED_SAMPLE,
    SCORES_FILE,
    Llama2cFormatError,
    Llama2cReference,
    Llama2cTokenizer,
    convert,
    load_default_model,
    read_checkpoint,
    read_tokenizer,
)

# stories260K's greedy tokens from BOS (id 1), as llama2.c's forward gives them.
SAMPLE_IDS = [
    403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337,
    410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352,
    266, 268, 388, 426, 338, 391, 266, 267, 337, 335, 312, 432, 398, 312, 286, 267, 414, 270, 333, 415,
]

TEXTS = [
    "Once upon a time",
    "Lily and Timmy played happily with the big red ball.",
    " leading space",
    "trailing space ",
    "multiple   spaces  here",
    "Line one.\nLine two.\n\nEnd\n",
    "tabs\tand\r\nCRLF",
    "Digits 0123456789, 3.14 and 1,000!",
    "Punctuation: \"quoted\" 'single' (paren) [br] {curly} <angle> ~`@#$%^&*_+=|\\/?;:",
    "Unicode: café, naïve, 日本語, emoji 🙂🚀, Ω≈√∫",
    "“smart quotes” — dash – ellipsis… ’tis",
    "\u00a0nbsp and\u200ahair space",
    "zoooz illlly appppple",  # runs of a repeated pair: the leftmost merges first
    "a",
    " ",
    "  ",
]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def shipped():
    model, tokenizer = load_default_model()
    model.eval()
    return model, tokenizer


@pytest.fixture
def stories(shared_data) -> Path:
    path = shared_data / "stories260K"
    if not (path / "stories260K.bin").is_file():
        pytest.skip(f"{path}/stories260K.bin is absent")
    return path


def greedy(model, ids: list[int], n: int) -> list[int]:
    with torch.no_grad():
        out = model.generate(
            torch.tensor([ids]), max_new_tokens=n, min_new_tokens=n, do_sample=False
        )
    return out[0, len(ids):].tolist()


def pieces_text(tokenizer, ids: list[int]) -> str:
    """The pieces joined as llama2.c prints them (the dummy-prefix space kept)."""
    return "".join(tokenizer.convert_ids_to_tokens(ids)).replace("\u2581", " ")


# ---------------------------------------------------------------------------------------------
# shipped files only
# ---------------------------------------------------------------------------------------------


def test_shipped_files_license_and_size():
    names = {p.name for p in DEFAULT_MODEL_DIR.iterdir()}
    for required in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                     "generation_config.json", SCORES_FILE, "LICENSE", "README.md"]:
        assert required in names, required
    license_text = (DEFAULT_MODEL_DIR / "LICENSE").read_text()
    assert "MIT License" in license_text
    assert "Copyright (c) 2023 Andrej Karpathy" in license_text
    assert "THE SOFTWARE IS PROVIDED \"AS IS\"" in license_text
    total = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.iterdir() if p.is_file())
    assert 1_000_000 < total < 2_000_000, total


def test_shipped_model_and_tokenizer_load_offline(shipped):
    model, tok = shipped
    cfg = model.config
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers) == (64, 172, 5)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.vocab_size) == (8, 4, 512)
    assert cfg.max_position_embeddings == 512 and cfg.rms_norm_eps == 1e-5
    assert cfg.rope_parameters["rope_theta"] == 10000
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # tied
    assert sum(p.numel() for p in model.parameters()) == 260_032  # llama2.c's arrays, RoPE tables aside
    assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (0, 1, 2, 0)
    assert len(tok) == 512 and tok.model_max_length == 512


def test_shipped_greedy_from_bos_is_documented_sample(shipped):
    model, tok = shipped
    ids = greedy(model, [1], 60)
    assert ids == SAMPLE_IDS
    assert pieces_text(tok, ids) == DOCUMENTED_SAMPLE
    # decode drops the dummy-prefix space, as llama2.c does after BOS
    assert tok.decode([1] + ids, skip_special_tokens=True) == DOCUMENTED_SAMPLE[1:]


def test_tokenizer_round_trip(shipped):
    _, tok = shipped
    for text in TEXTS:
        ids = tok(text)["input_ids"]
        assert ids[0] == 1 and 0 not in ids and 2 not in ids, text
        assert tok.decode(ids, skip_special_tokens=True) == text, text
    assert tok("Once upon a time")["input_ids"] == [1, 403, 407, 261, 378]
    assert tok.convert_ids_to_tokens([403, 407]) == ["\u2581Once", "\u2581upon"]
    # byte fallback: "\n" and "🙂" are not pieces
    assert tok("a\n🙂", add_special_tokens=False)["input_ids"] == [261, 13, 243, 162, 156, 133]


def test_tokenizer_matches_reference_encoder_on_shipped_scores(shipped):
    _, tok = shipped
    ref = Llama2cTokenizer.from_model_dir()
    rng = np.random.default_rng(0)
    alphabet = list("abcdefghijklmnopqrstuvwxyz    ,.!?\"'\nTLSOHé日🙂")
    pieces = ref.pieces[259:]
    texts = list(TEXTS)
    texts += ["".join(rng.choice(alphabet, size=rng.integers(0, 40))) for _ in range(300)]
    texts += ["".join(rng.choice(pieces, size=rng.integers(1, 12))) for _ in range(300)]
    for text in texts:
        assert tok(text)["input_ids"] == ref.encode(text, bos=True), repr(text)
    assert ref.decode(ref.encode("Hello  world\n", bos=True)) == "Hello  world\n"


# ---------------------------------------------------------------------------------------------
# against the original llama2.c files (../shared/data/stories260K)
# ---------------------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_tokenizer_matches_llama2c_tok512(stories, shipped):
    _, tok = shipped
    ref = Llama2cTokenizer.from_file(stories / "tok512.bin")
    assert ref.pieces == Llama2cTokenizer.from_model_dir().pieces
    for text in TEXTS + [DOCUMENTED_SAMPLE, "The cat sat on the mat. \"Hi!\" said Tom, 42 times."]:
        assert tok(text)["input_ids"] == ref.encode(text, bos=True), repr(text)
    assert ref.encode("", bos=True, eos=True) == [1, 2]


@pytest.mark.shared_data
def test_generation_matches_reference_forward(stories, shipped):
    model, tok = shipped
    ref = Llama2cReference(stories / "stories260K.bin")
    ref_tok = Llama2cTokenizer.from_file(stories / "tok512.bin")

    from_bos = ref.generate_greedy([1], 60)
    assert from_bos == SAMPLE_IDS
    assert greedy(model, [1], 60) == from_bos
    assert "".join(ref_tok.pieces[i] for i in from_bos) == DOCUMENTED_SAMPLE

    prompt = ref_tok.encode("Once upon a time", bos=True)
    assert tok("Once upon a time")["input_ids"] == prompt
    expected = ref.generate_greedy(prompt, 60)
    got = greedy(model, prompt, 60)
    assert got == expected
    text = tok.decode(prompt + got, skip_special_tokens=True)
    assert text.startswith("Once upon a time")
    # reads as a story: sentences of ordinary English words
    words = text.replace("\n", " ").split()
    assert len(words) > 25 and text.count(".") >= 3
    assert sum(w.strip(".,!?\"'").isalpha() for w in words) / len(words) > 0.95
    assert {"there", "was", "she", "play", "with"} <= {w.strip(".,!?\"'").lower() for w in words}


@pytest.mark.shared_data
def test_logits_match_reference_forward(stories, shipped):
    model, tok = shipped
    ref = Llama2cReference(stories / "stories260K.bin")
    ids = tok("Once upon a time, Tom found a shiny red ball in the garden.")["input_ids"]
    ids += SAMPLE_IDS[:40]
    expected = ref.logits(ids)
    with torch.no_grad():
        got = model(torch.tensor([ids])).logits[0].double().numpy()
    assert got.shape == expected.shape == (len(ids), 512)
    assert np.max(np.abs(got - expected)) < 1e-4


@pytest.mark.shared_data
def test_fresh_conversion_equals_shipped_files(stories, tmp_path):
    out = convert(stories / "stories260K.bin", stories / "tok512.bin", tmp_path / "model")
    for name in ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                 SCORES_FILE, "model.safetensors"]:
        assert (out / name).read_bytes() == (DEFAULT_MODEL_DIR / name).read_bytes(), name


# ---------------------------------------------------------------------------------------------
# converter on synthetic llama2.c files (no shared data)
# ---------------------------------------------------------------------------------------------


def write_tokenizer(path: Path, pieces: list[str], scores: list[float]) -> Path:
    encoded = [p.encode("utf-8") for p in pieces]
    with path.open("wb") as f:
        f.write(struct.pack("<i", max(len(b) for b in encoded)))
        for b, s in zip(encoded, scores):
            f.write(struct.pack("<fi", s, len(b)))
            f.write(b)
    return path


def write_checkpoint(path: Path, header: tuple[int, ...], rng=None, shared=True) -> Path:
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq = header
    rng = rng or np.random.default_rng(0)
    hs, kv_dim = dim // n_heads, n_kv * (dim // n_heads)

    def rand(*shape, scale=0.3):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    freqs = 1.0 / (10000.0 ** (np.arange(0, hs, 2) / hs))
    angles = np.outer(np.arange(seq), freqs)
    arrays = [
        rand(vocab, dim, scale=1.0), 1 + rand(n_layers, dim, scale=0.1),
        rand(n_layers, dim, dim), rand(n_layers, kv_dim, dim), rand(n_layers, kv_dim, dim),
        rand(n_layers, dim, dim), 1 + rand(n_layers, dim, scale=0.1),
        rand(n_layers, hidden, dim), rand(n_layers, dim, hidden), rand(n_layers, hidden, dim),
        1 + rand(dim, scale=0.1), np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32),
    ]
    if not shared:
        arrays.append(rand(vocab, dim, scale=1.0))
    with path.open("wb") as f:
        f.write(struct.pack("<7i", dim, hidden, n_layers, n_heads, n_kv, vocab if shared else -vocab, seq))
        for a in arrays:
            f.write(np.ascontiguousarray(a, dtype="<f4").tobytes())
    return path


@pytest.fixture
def tok_file(tmp_path) -> Path:
    spec = json.loads((DEFAULT_MODEL_DIR / SCORES_FILE).read_text(encoding="utf-8"))
    pieces = list(spec["pieces"])
    pieces[1], pieces[2] = "\n<s>\n", "\n</s>\n"  # as in tok512.bin
    return write_tokenizer(tmp_path / "tok.bin", pieces, spec["scores"])


@pytest.mark.parametrize("shared", [True, False])
def test_converter_on_synthetic_checkpoint_matches_reference(tmp_path, tok_file, shared):
    # head size 4, 2 query heads per kv head, 3 layers: the q/k permutation and GQA must hold generally
    header = (16, 40, 3, 4, 2, 512, 32)
    ckpt = write_checkpoint(tmp_path / "tiny.bin", header, shared=shared)
    config, weights = read_checkpoint(ckpt)
    assert config.shared_classifier is shared and config.head_size == 4 and config.kv_dim == 8
    assert read_tokenizer(tok_file)[0][1] == "\n<s>\n"

    spec = importlib.util.spec_from_file_location("convert_script", REPO_ROOT / "scripts" / "convert_stories260k.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "model"
    assert script.main(["--checkpoint", str(ckpt), "--tokenizer", str(tok_file), "--out", str(out), "--no-check"]) == 0

    model, tok = load_default_model(out)
    assert model.config.tie_word_embeddings is shared
    ref = Llama2cReference(ckpt)
    ids = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426]
    with torch.no_grad():
        got = model(torch.tensor([ids])).logits[0].double().numpy()
    np.testing.assert_allclose(got, ref.logits(ids), atol=1e-4, rtol=0)
    assert greedy(model, [1, 403], 12) == ref.generate_greedy([1, 403], 12)

    # the converted tokenizer encodes like llama2.c's encode fed with the same pieces and scores
    ref_tok = Llama2cTokenizer.from_file(tok_file)
    assert ref_tok.pieces[3:] == Llama2cTokenizer.from_model_dir(out).pieces[3:]
    for text in TEXTS + [DOCUMENTED_SAMPLE]:
        assert tok(text)["input_ids"] == ref_tok.encode(text, bos=True), repr(text)


HEADER = (16, 40, 3, 4, 2, 512, 32)


@pytest.mark.parametrize(
    "header, match",
    [
        ((16, 40, 3, 0, 2, 512, 32), "implausible header"),
        ((16, -40, 3, 4, 2, 512, 32), "implausible header"),
        ((18, 40, 3, 4, 2, 512, 32), "not a multiple of n_heads"),
        ((16, 40, 3, 4, 3, 512, 32), "not a multiple of n_kv_heads"),
        ((12, 40, 3, 4, 2, 512, 32), "odd"),
    ],
)
def test_converter_rejects_bad_header(tmp_path, tok_file, header, match):
    bad = tmp_path / "bad_header.bin"
    good = write_checkpoint(tmp_path / "good.bin", HEADER).read_bytes()
    bad.write_bytes(struct.pack("<7i", *header) + good[28:])
    with pytest.raises(Llama2cFormatError, match=match) as err:
        convert(bad, tok_file, tmp_path / "out")
    assert "bad_header.bin" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_converter_rejects_truncated_or_padded_file(tmp_path, tok_file):
    good = write_checkpoint(tmp_path / "good.bin", HEADER).read_bytes()
    short = tmp_path / "truncated.bin"
    short.write_bytes(good[:-100])
    with pytest.raises(Llama2cFormatError, match=r"truncated\.bin: file truncated"):
        convert(short, tok_file, tmp_path / "out")
    long = tmp_path / "padded.bin"
    long.write_bytes(good + b"\0" * 8)
    with pytest.raises(Llama2cFormatError, match=r"padded\.bin: file has trailing bytes"):
        read_checkpoint(long)
    tiny = tmp_path / "tiny.bin"
    tiny.write_bytes(good[:10])
    with pytest.raises(Llama2cFormatError, match=r"tiny\.bin: 10 bytes, too short"):
        read_checkpoint(tiny)
    missing = tmp_path / "missing.bin"
    with pytest.raises(Llama2cFormatError, match=r"missing\.bin: cannot read"):
        read_checkpoint(missing)
    assert not (tmp_path / "out").exists()


def test_converter_rejects_bad_tokenizer_file(tmp_path, tok_file):
    ckpt = write_checkpoint(tmp_path / "good.bin", HEADER)
    cut = tmp_path / "cut_tok.bin"
    cut.write_bytes(tok_file.read_bytes()[:-30])
    with pytest.raises(Llama2cFormatError, match=r"cut_tok\.bin: (truncated|bad length)"):
        convert(ckpt, cut, tmp_path / "out")
    with pytest.raises(Llama2cFormatError, match="trailing bytes"):
        read_tokenizer(tok_file, vocab_size=500)


def test_converter_rejects_wrong_rope_tables(tmp_path, tok_file):
    data = bytearray(write_checkpoint(tmp_path / "good.bin", HEADER).read_bytes())
    # the RoPE tables end the file: corrupt the last sin value
    data[-4:] = struct.pack("<f", 0.5)
    bad = tmp_path / "rope.bin"
    bad.write_bytes(bytes(data))
    with pytest.raises(Llama2cFormatError, match=r"rope\.bin: RoPE tables"):
        convert(bad, tok_file, tmp_path / "out")
