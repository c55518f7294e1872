"""Train MF-BPR on the embedded synthetic log, recommend, and evaluate — the Python API.

    python examples/quickstart.py
"""

from robustrec import Recommender, data, ranking_metrics_at_k

split = data.generate(n_users=2000, n_items=1000, seed=0)  # or data.load_split("path/to/log.csv")
print(split)

model = Recommender(loss="bpr", dim=32, epochs=10, eval_every=0).fit(split.train, show_progress=False)

ids, scores = model.recommend(0, N=5)  # user index 0; training items filtered out
print("user", split.user_ids[0], "->", split.item_ids[ids].tolist(), [round(float(s), 3) for s in scores])

metrics = ranking_metrics_at_k(model, split.train, split.test, K=20)
print({k: round(v, 4) for k, v in metrics.items()})
