"""Robust DPO in a minute on CPU: the shipped stories260K model, a few preference pairs, rDPO with ε = 0.2.

    python examples/align_quickstart.py                    # built-in toy pairs
    python examples/align_quickstart.py my_pairs.jsonl     # rows {"prompt": ..., "chosen": ..., "rejected": ...}

With ``flip_rate="auto"`` instead of 0.2, ε is estimated from the pairs before training (pass a few hundred
pairs, and ideally ``clean_pairs=`` a set whose labels you trust; see alignment.flip_rate). The command line
(``python -m alignment train``) does the same with every option as a flag: see docs/alignment.md.
"""

import sys
import tempfile

import pandas as pd
import torch
from datasets import Dataset

from alignment.config import RobustDPOConfig
from alignment.data import load_preference_pairs
from alignment.generation import sample_continuations
from alignment.models import load_model
from alignment.trainer import RobustDPOTrainer

torch.set_num_threads(1)  # a 260K-parameter model: one thread is fastest
torch.manual_seed(0)

if len(sys.argv) > 1:
    pairs = load_preference_pairs(sys.argv[1]).pairs  # validated; errors name the row
else:
    pairs = pd.DataFrame({
        "prompt": ["Lily went to the park with her mom. She felt"] * 4
        + ["Tom saw a dog in the street. The dog was"] * 4,
        "chosen": [" happy and she smiled.", " glad to play with her friend.", " so happy she laughed.",
                   " safe and loved.", " friendly and nice.", " kind and it loved Tom.", " happy to see him.",
                   " a good dog."],
        "rejected": [" sad and she cried.", " scared of the dark.", " angry and upset.", " lonely and sad.",
                     " mean and scary.", " angry and it hurt Tom.", " sad and lost.", " a bad dog."],
    })

policy, tokenizer = load_model()      # "default": the shipped stories260K model (or a save_pretrained folder)
reference, _ = load_model()           # a frozen copy: TRL needs an explicit reference for a local model

with tempfile.TemporaryDirectory() as out:
    config = RobustDPOConfig(
        output_dir=out, loss="rdpo", flip_rate=0.2,  # or flip_rate="auto"
        beta=0.1, learning_rate=1e-3, max_steps=10, per_device_train_batch_size=8,
        use_cpu=True, report_to="none", save_strategy="no", logging_steps=5, disable_tqdm=True,
    )
    trainer = RobustDPOTrainer(
        model=policy, ref_model=reference, args=config, processing_class=tokenizer,
        train_dataset=Dataset.from_pandas(pairs[["prompt", "chosen", "rejected"]], preserve_index=False),
    )
    print(f"training {config.loss} with flip rate {trainer.flip_rate} on {len(pairs)} pairs, fitted to "
          f"max_length={config.max_length}: {trainer.length_counts['train']}")
    trainer.train()

prompt = "Lily went to the park with her mom. She felt"
for name, model in (("reference", reference), ("trained", trainer.model)):
    print(f"{name}: {prompt}{sample_continuations(model, tokenizer, [prompt], max_new_tokens=30, seed=1)[0]}")
