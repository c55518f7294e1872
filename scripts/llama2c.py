"""llama2.c checkpoints: reader, reference implementation and converter to transformers (a development tool,
not part of the installed packages).

The default policy of the alignment experiments is Andrej Karpathy's ``stories260K`` checkpoint
(MIT, llama2.c), a 260K-parameter Llama-2 model trained on TinyStories. This module

* reads llama2.c's *legacy* checkpoint format (``read_checkpoint``) and its tokenizer file
  (``read_tokenizer``), validating headers and sizes with errors that name the file;
* holds a direct reference implementation of llama2.c's ``encode`` (``Llama2cTokenizer``) and of its
  ``forward`` pass (``Llama2cReference``, numpy, with llama2.c's interleaved RoPE pairs read from the
  file's own ``freq_cis`` tables), used by the tests as ground truth;
* converts both into a ``transformers`` ``LlamaForCausalLM`` and a fast tokenizer (``convert``), which
  ``scripts/convert_stories260k.py`` runs; the converted files ship in ``alignment/default_model``
  (:data:`alignment.models.DEFAULT_MODEL_DIR`), which the tests check against this reference;
* loads a converted folder offline (``load_default_model``).

Only numpy is imported at module import; torch, transformers and tokenizers are imported by the
functions that need them.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DEFAULT_MODEL_DIR",
    "DOCUMENTED_SAMPLE",
    "Llama2cConfig",
    "Llama2cFormatError",
    "Llama2cReference",
    "Llama2cTokenizer",
    "build_hf_config",
    "build_hf_tokenizer",
    "convert",
    "load_default_model",
    "read_checkpoint",
    "read_tokenizer",
    "to_hf_state_dict",
]

from alignment.models import DEFAULT_MODEL_DIR  # noqa: E402  (the folder the converted model ships in)

#: What stories260K produces greedily from BOS (60 tokens, pieces joined as llama2.c prints them).
DOCUMENTED_SAMPLE = (
    " Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
    " One day, she saw a big, red ball. She wanted to play with it, but it was too high"
)

HEADER_FORMAT = "<7i"
HEADER_BYTES = struct.calcsize(HEADER_FORMAT)
FLOAT_BYTES = 4

UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
BYTE_OFFSET = 3  # byte b is token id b + 3 (<0x00> .. <0xFF>)
SCORES_FILE = "llama2c_tokenizer.json"  # pieces + scores of tok512.bin, shipped with the model
SPACE_SYMBOL = "\u2581"  # sentencepiece's "▁", which llama2.c's export turned back into " "


class Llama2cFormatError(ValueError):
    """A llama2.c checkpoint or tokenizer file is malformed (the message names the file)."""


# --------------------------------------------------------------------------------------------------
# checkpoint
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Llama2cConfig:
    dim: int
    hidden_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    seq_len: int
    shared_classifier: bool = True

    @property
    def head_size(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_size

    def array_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """The float32 arrays after the header, in file order (RoPE tables included)."""
        L, d, h, kv = self.n_layers, self.dim, self.hidden_dim, self.kv_dim
        shapes = [
            ("token_embedding", (self.vocab_size, d)),
            ("rms_att", (L, d)),
            ("wq", (L, d, d)),  # (out, in) per layer, as llama2.c's matmul reads them
            ("wk", (L, kv, d)),
            ("wv", (L, kv, d)),
            ("wo", (L, d, d)),
            ("rms_ffn", (L, d)),
            ("w1", (L, h, d)),
            ("w2", (L, d, h)),
            ("w3", (L, h, d)),
            ("rms_final", (d,)),
            ("freq_cis_real", (self.seq_len, self.head_size // 2)),
            ("freq_cis_imag", (self.seq_len, self.head_size // 2)),
        ]
        if not self.shared_classifier:
            shapes.append(("wcls", (self.vocab_size, d)))
        return shapes

    def expected_file_size(self) -> int:
        n = sum(int(np.prod(shape)) for _, shape in self.array_shapes())
        return HEADER_BYTES + FLOAT_BYTES * n


def _read_header(path: Path, data: bytes) -> Llama2cConfig:
    if len(data) < HEADER_BYTES:
        raise Llama2cFormatError(
            f"{path}: {len(data)} bytes, too short for a llama2.c checkpoint header "
            f"({HEADER_BYTES} bytes: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len)"
        )
    dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len = struct.unpack_from(
        HEADER_FORMAT, data
    )
    fields = dict(
        dim=dim, hidden_dim=hidden_dim, n_layers=n_layers, n_heads=n_heads,
        n_kv_heads=n_kv_heads, vocab_size=abs(vocab_size), seq_len=seq_len,
    )
    bad = [f"{k}={v}" for k, v in fields.items() if v <= 0 or v > 1 << 20]
    if bad:
        raise Llama2cFormatError(
            f"{path}: not a llama2.c legacy checkpoint, implausible header values {', '.join(bad)}"
        )
    if dim % n_heads:
        raise Llama2cFormatError(f"{path}: bad header, dim={dim} is not a multiple of n_heads={n_heads}")
    if n_heads % n_kv_heads:
        raise Llama2cFormatError(
            f"{path}: bad header, n_heads={n_heads} is not a multiple of n_kv_heads={n_kv_heads}"
        )
    if (dim // n_heads) % 2:
        raise Llama2cFormatError(f"{path}: bad header, head size {dim // n_heads} is odd (RoPE needs pairs)")
    return Llama2cConfig(**fields, shared_classifier=vocab_size > 0)


def read_checkpoint(path: str | Path) -> tuple[Llama2cConfig, dict[str, np.ndarray]]:
    """Read a llama2.c legacy checkpoint: its config and float32 arrays (see ``array_shapes``)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise Llama2cFormatError(f"{path}: cannot read llama2.c checkpoint ({exc})") from exc
    config = _read_header(path, data)
    expected = config.expected_file_size()
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise Llama2cFormatError(
            f"{path}: file {what}: {len(data)} bytes, but its header ({config}) implies {expected} bytes "
            "(header + float32 weights + RoPE tables)"
        )
    weights: dict[str, np.ndarray] = {}
    offset = HEADER_BYTES
    for name, shape in config.array_shapes():
        count = int(np.prod(shape))
        weights[name] = np.frombuffer(data, dtype="<f4", count=count, offset=offset).reshape(shape).copy()
        offset += FLOAT_BYTES * count
    if config.shared_classifier:
        weights["wcls"] = weights["token_embedding"]
    bad = [name for name, arr in weights.items() if not np.all(np.isfinite(arr))]
    if bad:
        raise Llama2cFormatError(f"{path}: non-finite values in {', '.join(bad)}")
    return config, weights


# --------------------------------------------------------------------------------------------------
# reference forward pass (llama2.c's run.c ``forward``, in numpy)
# --------------------------------------------------------------------------------------------------


def _rmsnorm(x: np.ndarray, weight: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    return weight * (x / np.sqrt(np.mean(x * x) + eps))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


class Llama2cReference:
    """Direct port of llama2.c's single-token ``forward`` with a key/value cache (float64 math).

    RoPE rotates the interleaved pairs (2j, 2j+1) of every head with the ``freq_cis`` tables stored in
    the checkpoint itself; head h attends with key/value head h // (n_heads / n_kv_heads).
    """

    def __init__(self, checkpoint: str | Path):
        self.config, w = read_checkpoint(checkpoint)
        self.w = {k: v.astype(np.float64) for k, v in w.items()}
        self.reset()

    def reset(self) -> None:
        c = self.config
        self.key_cache = np.zeros((c.n_layers, c.seq_len, c.kv_dim))
        self.value_cache = np.zeros((c.n_layers, c.seq_len, c.kv_dim))

    def _rope(self, vec: np.ndarray, pos: int) -> np.ndarray:
        hs = self.config.head_size
        cos, sin = self.w["freq_cis_real"][pos], self.w["freq_cis_imag"][pos]
        out = vec.copy()
        for start in range(0, vec.shape[0], hs):
            for j in range(hs // 2):
                a, b = vec[start + 2 * j], vec[start + 2 * j + 1]
                out[start + 2 * j] = a * cos[j] - b * sin[j]
                out[start + 2 * j + 1] = a * sin[j] + b * cos[j]
        return out

    def forward(self, token: int, pos: int) -> np.ndarray:
        """Logits for the next token after ``token`` at position ``pos`` (positions fed in order)."""
        c, w = self.config, self.w
        if not 0 <= pos < c.seq_len:
            raise ValueError(f"position {pos} outside the context of {c.seq_len}")
        hs, kv_mul = c.head_size, c.n_heads // c.n_kv_heads
        x = w["token_embedding"][token].copy()
        for l in range(c.n_layers):
            xb = _rmsnorm(x, w["rms_att"][l])
            q = self._rope(w["wq"][l] @ xb, pos)
            k = self._rope(w["wk"][l] @ xb, pos)
            v = w["wv"][l] @ xb
            self.key_cache[l, pos] = k
            self.value_cache[l, pos] = v
            att_out = np.zeros(c.dim)
            for h in range(c.n_heads):
                kvh = h // kv_mul
                qh = q[h * hs:(h + 1) * hs]
                keys = self.key_cache[l, : pos + 1, kvh * hs:(kvh + 1) * hs]
                vals = self.value_cache[l, : pos + 1, kvh * hs:(kvh + 1) * hs]
                att = _softmax(keys @ qh / np.sqrt(hs))
                att_out[h * hs:(h + 1) * hs] = att @ vals
            x = x + w["wo"][l] @ att_out
            xb = _rmsnorm(x, w["rms_ffn"][l])
            h1 = w["w1"][l] @ xb
            h3 = w["w3"][l] @ xb
            x = x + w["w2"][l] @ ((h1 / (1.0 + np.exp(-h1))) * h3)
        x = _rmsnorm(x, w["rms_final"])
        return w["wcls"] @ x

    def logits(self, tokens: list[int]) -> np.ndarray:
        """Logits at every position of ``tokens`` (shape (len, vocab)), from a fresh cache."""
        self.reset()
        return np.stack([self.forward(t, pos) for pos, t in enumerate(tokens)])

    def generate_greedy(self, prompt: list[int], max_new_tokens: int) -> list[int]:
        """Greedy continuation of ``prompt`` (argmax every step; no stopping): the new tokens only."""
        if not prompt:
            raise ValueError("prompt must hold at least one token (e.g. BOS)")
        self.reset()
        tokens = list(prompt)
        for pos in range(len(prompt) + max_new_tokens - 1):
            logits = self.forward(tokens[pos], pos)
            if pos >= len(prompt) - 1:
                tokens.append(int(np.argmax(logits)))
        return tokens[len(prompt):]


# --------------------------------------------------------------------------------------------------
# tokenizer (llama2.c's tok512.bin and its ``encode``)
# --------------------------------------------------------------------------------------------------


def read_tokenizer(path: str | Path, vocab_size: int = 512) -> tuple[list[str], list[float], int]:
    """Read a llama2.c tokenizer file: pieces (UTF-8 text), scores and max_token_length."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise Llama2cFormatError(f"{path}: cannot read llama2.c tokenizer ({exc})") from exc
    if len(data) < 4:
        raise Llama2cFormatError(f"{path}: too short for a llama2.c tokenizer file")
    (max_len,) = struct.unpack_from("<i", data, 0)
    offset, pieces, scores = 4, [], []
    for i in range(vocab_size):
        if offset + 8 > len(data):
            raise Llama2cFormatError(f"{path}: truncated at token {i} of {vocab_size}")
        score, length = struct.unpack_from("<fi", data, offset)
        offset += 8
        if length < 0 or length > max_len or offset + length > len(data):
            raise Llama2cFormatError(f"{path}: bad length {length} for token {i} (max_token_length {max_len})")
        try:
            pieces.append(data[offset:offset + length].decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise Llama2cFormatError(f"{path}: token {i} is not valid UTF-8") from exc
        scores.append(float(score))
        offset += length
    if offset != len(data):
        raise Llama2cFormatError(
            f"{path}: {len(data) - offset} trailing bytes after {vocab_size} tokens (wrong vocab size?)"
        )
    return pieces, scores, max_len


class Llama2cTokenizer:
    """Reference port of llama2.c's ``encode``/``decode`` (run.c), for checking the fast tokenizer.

    Encoding: prepend a " " (the "dummy prefix") to non-empty text, look every Unicode character up in
    the vocabulary (byte fallback: each UTF-8 byte b of an unknown character becomes id b + 3), then
    repeatedly merge the leftmost adjacent pair whose concatenation is a piece with the highest score.
    Pieces are plain text with real spaces (as in tok512.bin); ids 0, 1, 2 are <unk>, <s>, </s>.
    """

    def __init__(self, pieces: list[str], scores: list[float]):
        if len(pieces) != len(scores):
            raise ValueError("pieces and scores differ in length")
        self.pieces = list(pieces)
        self.scores = list(scores)
        # Special and byte tokens are matched by id, never by their text (as run.c in practice does).
        self.lookup = {p: i for i, p in enumerate(self.pieces) if i >= BYTE_OFFSET + 256}

    @classmethod
    def from_file(cls, path: str | Path) -> "Llama2cTokenizer":
        pieces, scores, _ = read_tokenizer(path)
        return cls(pieces, scores)

    @classmethod
    def from_model_dir(cls, path: str | Path | None = None) -> "Llama2cTokenizer":
        """Rebuild from a converted folder, whose ``llama2c_tokenizer.json`` keeps pieces and scores."""
        path = Path(path) if path is not None else DEFAULT_MODEL_DIR
        spec = json.loads((path / SCORES_FILE).read_text(encoding="utf-8"))
        return cls(spec["pieces"], spec["scores"])

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        ids: list[int] = [BOS_ID] if bos else []
        if text:
            ids.append(self.lookup[" "])
        for ch in text:
            if ch in self.lookup:
                ids.append(self.lookup[ch])
            else:
                ids.extend(b + BYTE_OFFSET for b in ch.encode("utf-8"))
        start = 1 if bos else 0
        while True:
            best_score, best_id, best_idx = -1e10, -1, -1
            for i in range(start, len(ids) - 1):
                merged = self._text(ids[i]) + self._text(ids[i + 1])
                j = self.lookup.get(merged) if merged else None
                if j is not None and self.scores[j] > best_score:
                    best_score, best_id, best_idx = self.scores[j], j, i
            if best_idx < 0:
                break
            ids[best_idx: best_idx + 2] = [best_id]
        if eos:
            ids.append(EOS_ID)
        return ids

    def _text(self, i: int) -> str:
        # Special and byte tokens never take part in a merge.
        return self.pieces[i] if i >= BYTE_OFFSET + 256 else "\0"

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids`` like llama2.c prints it, except that the dummy prefix space is dropped once."""
        out = bytearray()
        for i in ids:
            if i in (UNK_ID, BOS_ID, EOS_ID):
                continue
            if BYTE_OFFSET <= i < BYTE_OFFSET + 256:
                out.append(i - BYTE_OFFSET)
            else:
                out.extend(self.pieces[i].encode("utf-8"))
        text = out.decode("utf-8", errors="replace")
        return text[1:] if text.startswith(" ") else text


# --------------------------------------------------------------------------------------------------
# conversion to transformers
# --------------------------------------------------------------------------------------------------


def _hf_piece(i: int, piece: str) -> str:
    if i == UNK_ID:
        return "<unk>"
    if i == BOS_ID:
        return "<s>"  # stored as "\n<s>\n" in tok512.bin (llama2.c's decode)
    if i == EOS_ID:
        return "</s>"
    return piece.replace(" ", SPACE_SYMBOL)


def build_hf_tokenizer(pieces: list[str], scores: list[float], model_max_length: int = 512):
    """A ``PreTrainedTokenizerFast`` that encodes exactly as llama2.c's ``encode``.

    * model: BPE over the vocabulary with ``byte_fallback``; its merges are *every* pair of pieces whose
      concatenation is a piece, ranked by the merged piece's score (llama2.c merges any such pair);
    * normalizer: prepend "▁" to non-empty text (llama2.c's dummy prefix, also when the text already
      starts with a space) and replace " " by "▁"; no pre-tokenizer, so merges may span words exactly as
      in llama2.c;
    * decoder: "▁" → " ", byte fallback, fuse, strip the dummy-prefix space once;
    * post-processor: BOS before the text (``add_special_tokens``); no EOS.
    The pieces and scores of tok512.bin are also written to ``llama2c_tokenizer.json`` by ``convert``.
    """
    from tokenizers import Tokenizer, decoders, normalizers, processors
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    n_regular = BYTE_OFFSET + 256
    hf_pieces = [_hf_piece(i, p) for i, p in enumerate(pieces)]
    vocab = {p: i for i, p in enumerate(hf_pieces)}
    if len(vocab) != len(hf_pieces):
        raise ValueError("duplicate pieces in the llama2.c vocabulary")
    mergeable = {p: i for i, p in enumerate(hf_pieces) if i >= n_regular}
    merges = []
    for piece, i in mergeable.items():
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in mergeable and right in mergeable:
                merges.append((-scores[i], i, cut, left, right))
    merges.sort()
    model = BPE(
        vocab=vocab,
        merges=[(left, right) for *_, left, right in merges],
        unk_token="<unk>",
        fuse_unk=True,
        byte_fallback=True,
    )
    tok = Tokenizer(model)
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    tok.normalizer = normalizers.Sequence(
        [normalizers.Prepend(SPACE_SYMBOL), normalizers.Replace(" ", SPACE_SYMBOL)]
    )
    tok.pre_tokenizer = None
    tok.decoder = decoders.Sequence(
        [
            decoders.Replace(SPACE_SYMBOL, " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", BOS_ID)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<unk>",
        model_max_length=model_max_length,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )


def build_hf_config(config: Llama2cConfig):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.dim,
        intermediate_size=config.hidden_dim,
        num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads,
        num_key_value_heads=config.n_kv_heads,
        head_dim=config.head_size,
        hidden_act="silu",
        max_position_embeddings=config.seq_len,
        rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=config.shared_classifier,
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=UNK_ID,
        architectures=["LlamaForCausalLM"],
    )


def _interleaved_to_half_split(w: np.ndarray, n_heads: int, head_size: int) -> np.ndarray:
    """Reorder q/k projection rows per head from RoPE pairs (2j, 2j+1) to pairs (j, j + head_size/2)."""
    order = np.concatenate([np.arange(0, head_size, 2), np.arange(1, head_size, 2)])
    return w.reshape(n_heads, head_size, -1)[:, order, :].reshape(w.shape)


def to_hf_state_dict(config: Llama2cConfig, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """llama2.c arrays → ``LlamaForCausalLM`` state dict (numpy float32)."""
    hs = config.head_size
    sd = {
        "model.embed_tokens.weight": weights["token_embedding"],
        "model.norm.weight": weights["rms_final"],
    }
    for l in range(config.n_layers):
        p = f"model.layers.{l}."
        sd[p + "input_layernorm.weight"] = weights["rms_att"][l]
        sd[p + "self_attn.q_proj.weight"] = _interleaved_to_half_split(weights["wq"][l], config.n_heads, hs)
        sd[p + "self_attn.k_proj.weight"] = _interleaved_to_half_split(weights["wk"][l], config.n_kv_heads, hs)
        sd[p + "self_attn.v_proj.weight"] = weights["wv"][l]
        sd[p + "self_attn.o_proj.weight"] = weights["wo"][l]
        sd[p + "post_attention_layernorm.weight"] = weights["rms_ffn"][l]
        sd[p + "mlp.gate_proj.weight"] = weights["w1"][l]
        sd[p + "mlp.up_proj.weight"] = weights["w3"][l]
        sd[p + "mlp.down_proj.weight"] = weights["w2"][l]
    if not config.shared_classifier:
        sd["lm_head.weight"] = weights["wcls"]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sd.items()}


def _check_rope_tables(path: Path, config: Llama2cConfig, weights: dict[str, np.ndarray]) -> None:
    """The stored tables must be transformers' default RoPE (theta 10000), else the mapping is wrong."""
    hs = config.head_size
    freqs = 1.0 / (10000.0 ** (np.arange(0, hs, 2) / hs))
    angles = np.outer(np.arange(config.seq_len), freqs)
    if not (
        np.allclose(weights["freq_cis_real"], np.cos(angles), atol=1e-4)
        and np.allclose(weights["freq_cis_imag"], np.sin(angles), atol=1e-4)
    ):
        raise Llama2cFormatError(f"{path}: RoPE tables are not those of theta=10000; cannot convert")


def convert(checkpoint: str | Path, tokenizer: str | Path, out: str | Path) -> Path:
    """Convert a llama2.c checkpoint + tokenizer into a transformers model folder ``out``."""
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM

    checkpoint, tokenizer, out = Path(checkpoint), Path(tokenizer), Path(out)
    config, weights = read_checkpoint(checkpoint)
    _check_rope_tables(checkpoint, config, weights)
    pieces, scores, _ = read_tokenizer(tokenizer, config.vocab_size)

    hf_config = build_hf_config(config)
    with torch.device("meta"):
        model = LlamaForCausalLM(hf_config)
    state = {k: torch.from_numpy(v) for k, v in to_hf_state_dict(config, weights).items()}
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in missing if not (config.shared_classifier and k == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    if config.shared_classifier:
        model.tie_weights()
    # rotary inv_freq buffers were created on the meta device: rebuild them on CPU.
    model.model.rotary_emb = type(model.model.rotary_emb)(config=hf_config)
    model.eval()
    model.generation_config = GenerationConfig(
        bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=UNK_ID
    )

    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    hf_tok = build_hf_tokenizer(pieces, scores, model_max_length=config.seq_len)
    hf_tok.save_pretrained(out)
    # keep llama2.c's pieces and scores beside tokenizer.json (the tokenizers library rejects unknown
    # keys inside it), so the reference encoder can be rebuilt from the shipped files alone.
    (out / SCORES_FILE).write_text(
        json.dumps({"source": tokenizer.name, "pieces": pieces, "scores": scores}, ensure_ascii=False)
        + "\n",
        encoding="utf-8",
    )
    return out


# --------------------------------------------------------------------------------------------------
# the shipped default model
# --------------------------------------------------------------------------------------------------


def load_default_model(path: str | Path | None = None, dtype=None):
    """Load the shipped stories260K ``(LlamaForCausalLM, tokenizer)`` from local files only."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path) if path is not None else DEFAULT_MODEL_DIR
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path}: no converted model (config.json missing); run scripts/convert_stories260k.py"
        )
    kwargs = {"local_files_only": True}
    if dtype is not None:
        kwargs["dtype"] = dtype
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return model, tokenizer
