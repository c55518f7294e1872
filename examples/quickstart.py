"""Train MF-BPR on the embedded synthetic log, recommend, save, load and evaluate — the Python API.

    python examples/quickstart.py
"""

import tempfile

import numpy as np

from robustrec import Recommender, data, ranking_metrics_at_k

split = data.generate(n_users=2000, n_items=1000, seed=0)  # or data.load_split("path/to/log.csv")
print(split)

model = Recommender(loss="bpr", dim=32, epochs=10, eval_every=0).fit(split.train, show_progress=False)

# implicit's shape: user indices in, item indices and scores out; training items filtered out
ids, scores = model.recommend(0, N=5)
print("user", split.user_ids[0], "->", split.item_ids[ids].tolist(), [round(float(s), 3) for s in scores])
users = np.arange(3)
ids, scores = model.recommend(users, split.train.matrix[users], N=5, filter_items=[0, 1])  # (3, 5) each
ids, scores = model.similar_items(7, N=3)  # cosine of the item factors; item 7 itself first

# raw ids in and out, as a DataFrame: user, item, rank, score
print(model.recommend_frame(split.user_ids[:2], N=3))

# save and load: safetensors + JSON in a directory, identical scores afterwards
with tempfile.TemporaryDirectory() as folder:
    model.save(folder)
    again = Recommender.load(folder)
    assert np.array_equal(again.recommend(users, N=5)[0], model.recommend(users, N=5)[0])

metrics = ranking_metrics_at_k(model, split.train, split.test, K=20)
print({k: round(v, 4) for k, v in metrics.items()})
