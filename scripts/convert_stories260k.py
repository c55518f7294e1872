#!/usr/bin/env python
"""Convert llama2.c's stories260K checkpoint into the transformers model shipped in alignment/default_model.

    python scripts/convert_stories260k.py \
        --checkpoint ../shared/data/stories260K/stories260K.bin \
        --tokenizer ../shared/data/stories260K/tok512.bin \
        --out alignment/default_model

Writes config.json, generation_config.json, model.safetensors, tokenizer.json and tokenizer_config.json
(existing LICENSE and README.md in --out are left alone), then checks the result against the numpy
reference of llama2.c's forward pass and encoder (greedy tokens from BOS and "Once upon a time").
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from llama2c import (  # noqa: E402
    DEFAULT_MODEL_DIR,
    Llama2cReference,
    Llama2cTokenizer,
    convert,
    load_default_model,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="llama2.c legacy .bin checkpoint")
    parser.add_argument("--tokenizer", type=Path, required=True, help="llama2.c tokenizer .bin (tok512.bin)")
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR, help="output folder")
    parser.add_argument("--no-check", action="store_true", help="skip the check against the reference")
    args = parser.parse_args(argv)

    out = convert(args.checkpoint, args.tokenizer, args.out)
    print(f"wrote {out}:")
    for f in sorted(out.iterdir()):
        if f.is_file():
            print(f"  {f.name:28s} {f.stat().st_size:>9,d} bytes")
    if args.no_check:
        return 0

    import torch

    model, tok = load_default_model(out)
    ref = Llama2cReference(args.checkpoint)
    ref_tok = Llama2cTokenizer.from_file(args.tokenizer)
    for prompt in ["", "Once upon a time"]:
        ids = ref_tok.encode(prompt, bos=True)
        if tok(prompt)["input_ids"] != ids:
            print(f"FAIL: tokenizer differs from llama2.c's encode on {prompt!r}", file=sys.stderr)
            return 1
        expected = ref.generate_greedy(ids, 60)
        with torch.no_grad():
            got = model.generate(torch.tensor([ids]), max_new_tokens=60, do_sample=False)[0, len(ids):]
        if got.tolist() != expected:
            print(f"FAIL: greedy tokens differ from the reference after {prompt!r}", file=sys.stderr)
            return 1
        print(f"greedy from {prompt or '<s>'!r}: {tok.decode(got)!r}")
    print("OK: matches the llama2.c reference")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
