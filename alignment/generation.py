"""Sampling continuations from a causal LM and scoring texts under it (batched, CPU-friendly).

Prompts are left-padded for generation; completion texts are recovered by decoding prompt + completion
together and cutting the decoded prompt off, because sentencepiece-style decoders drop the leading space of
a sequence's first piece.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _left_padded(tokenizer, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    width = max(len(ids) for ids in encoded)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for i, ids in enumerate(encoded):
        input_ids[i, width - len(ids):] = torch.tensor(ids)
        attention_mask[i, width - len(ids):] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


@torch.no_grad()
def sample_continuations(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 256,
) -> list[str]:
    """One sampled continuation per prompt (pure ancestral sampling: no top-k / top-p).

    Args:
        prompts: n prompt texts (repeat a prompt to get several samples).
    Returns:
        n continuation texts, each starting with the space that separates it from its prompt; sampling
        stops at EOS (not included in the text) or after ``max_new_tokens`` tokens.
    """
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    was_training = model.training
    model.eval()
    out: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            chunk = list(prompts[start:start + batch_size])
            inputs = _left_padded(tokenizer, chunk)
            generated = model.generate(
                **inputs,
                do_sample=True,
                temperature=temperature,
                top_k=0,
                top_p=1.0,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            width = inputs["input_ids"].shape[1]
            for i, prompt in enumerate(chunk):
                prompt_ids = inputs["input_ids"][i][inputs["attention_mask"][i].bool()].tolist()
                new_ids = generated[i, width:].tolist()
                if tokenizer.eos_token_id in new_ids:
                    new_ids = new_ids[: new_ids.index(tokenizer.eos_token_id)]
                full = tokenizer.decode(prompt_ids + new_ids, skip_special_tokens=True)
                head = tokenizer.decode(prompt_ids, skip_special_tokens=True)
                out.append(full[len(head):] if full.startswith(head) else full)
    finally:
        model.train(was_training)
        torch.random.set_rng_state(generator_state)
    return out


@torch.no_grad()
def completion_logprobs(
    model,
    tokenizer,
    prompts: Sequence[str],
    completions: Sequence[str],
    *,
    batch_size: int = 128,
    add_eos: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of ``log π(completion tokens | prompt)`` per pair, and the number of completion tokens.

    The completion tokens are those of ``tokenizer(prompt + completion)`` past the common prefix with
    ``tokenizer(prompt)`` (as TRL splits them). Returns two (n,) tensors: float log-probabilities, long lengths.
    """
    was_training = model.training
    model.eval()
    logps, lengths = [], []
    try:
        for start in range(0, len(prompts), batch_size):
            rows = []
            for prompt, completion in zip(prompts[start:start + batch_size], completions[start:start + batch_size]):
                prompt_ids = tokenizer(prompt)["input_ids"]
                full_ids = tokenizer(prompt + completion)["input_ids"]
                if add_eos:
                    full_ids = full_ids + [tokenizer.eos_token_id]
                cut = 0
                while cut < min(len(prompt_ids), len(full_ids)) and prompt_ids[cut] == full_ids[cut]:
                    cut += 1
                rows.append((full_ids, cut))
            width = max(len(ids) for ids, _ in rows)
            input_ids = torch.zeros((len(rows), width), dtype=torch.long)
            attention = torch.zeros((len(rows), width), dtype=torch.long)
            completion_mask = torch.zeros((len(rows), width), dtype=torch.bool)
            for i, (ids, cut) in enumerate(rows):
                input_ids[i, : len(ids)] = torch.tensor(ids)
                attention[i, : len(ids)] = 1
                completion_mask[i, cut: len(ids)] = True
            logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1].float()
            token_logps = torch.log_softmax(logits, dim=-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
            mask = completion_mask[:, 1:]
            logps.append((token_logps * mask).sum(dim=1))
            lengths.append(mask.sum(dim=1))
    finally:
        model.train(was_training)
    return torch.cat(logps), torch.cat(lengths)
