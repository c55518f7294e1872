"""Load interaction data into robustrec's Interactions / Split and look at it.

    python examples/load_data.py                         # the embedded synthetic log
    python examples/load_data.py ../shared/data/gowalla  # any supported path (format detected)
    python examples/load_data.py events.csv              # a log: split per user, 80/20
"""

import logging
import sys
import time

from robustrec import data

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

t0 = time.perf_counter()
if len(sys.argv) > 1:
    split = data.load_split(sys.argv[1], test_fraction=0.2, seed=0)  # load() keeps a log unsplit
else:
    split = data.generate(n_users=5000, n_items=3000, seed=0)
print(f"{split}  ({time.perf_counter() - t0:.2f}s)")

train = split.train
counts = train.user_counts()
pop = train.item_counts()
print(f"interactions per user: min {counts.min()}, median {int(sorted(counts)[len(counts) // 2])}, max {counts.max()}")
top = pop[pop.argsort()[::-1][: max(1, train.n_items // 10)]].sum() / max(1, pop.sum())
print(f"share of training interactions on the top 10% items: {top:.2f}")
print("first user's training items (raw ids):", train.item_ids[train.user_items(0)][:10])
print(train.to_frame().head())
if split.report is not None:
    print("load report:", split.report.summary())
if train.ratings is not None and split.report is not None and split.report.format == "deca":
    print("noisy training interactions (rating < 4):", int(data.deca_noise_mask(split).sum()))
