"""The fused CPU kernel (robustrec.kernels / robustrec.engines): same gradient and update as autograd through
objective_loss with FBGEMM's fused optimizer, the samplers' guarantees, determinism and exact resume."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from robustrec import data, kernels
from robustrec.engines import ENGINES, KernelEngine, resolve_engine
from robustrec.models import ModelOutput
from robustrec.objectives import (
    LOSS_CODES,
    LOSSES,
    PHI,
    phi_logit,
    objective_loss,
    row_gradients,
    sigmoid_scalar,
    softplus_scalar,
    softplus_sigmoid,
    tce_drop_rate,
    tce_dropped,
)
from robustrec.optim import CPU_OPTIMIZERS, fuse, optimizer_state
from robustrec.config import TrainConfig
from robustrec.training import CHECKPOINT_FILE, fit, new_model


def _objective(loss, **overrides):
    settings = dict(loss=loss, l2=0.0, phi_prior=0.2, rce_beta=0.5, tce_max_drop=0.3, tce_warmup_steps=0)
    return TrainConfig(**{**settings, **overrides})


@pytest.mark.parametrize("loss", LOSSES)
def test_row_gradients_equal_autograd_through_objective_loss(loss):
    """d loss / d score (and d / d φ score) of every row, times 1/B, is autograd's gradient; the rows' mean is the loss."""
    rng = np.random.default_rng(LOSS_CODES[loss])
    batch, n_cols = 7, 4
    scores = torch.tensor(rng.normal(0, 2, (batch, n_cols)), dtype=torch.float64, requires_grad=True)
    flips = torch.tensor(rng.normal(0, 2, (batch, n_cols)), dtype=torch.float64, requires_grad=True)
    objective = _objective(loss)
    output = ModelOutput({"preference": scores, PHI: flips},
                         {"preference": torch.tensor(0.0, dtype=torch.float64), PHI: torch.tensor(0.0, dtype=torch.float64)})
    expected = objective_loss(output, objective, step=0)
    expected.backward()

    s, g = scores.detach().numpy(), flips.detach().numpy()
    ds, dg = np.zeros_like(s), np.zeros_like(g)
    parts = np.array([row_gradients(LOSS_CODES[loss], s, g, ds, dg, b, phi_logit(objective), objective.rce_beta)
                      for b in range(batch)])
    if loss == "tce":  # the batch step of T-CE: drop the largest observed-item losses
        dropped = np.zeros(batch, dtype=bool)
        n_drop = int(tce_drop_rate(objective, 0) * batch)
        tce_dropped(parts[:, 0], n_drop, dropped, np.zeros(batch))
        assert dropped.sum() == n_drop == 2
        parts[dropped, 0] = 0.0
        ds[dropped, 0] = 0.0
    np.testing.assert_allclose(parts.sum() / batch, expected.item(), rtol=1e-12)
    np.testing.assert_allclose(ds / batch, scores.grad.numpy(), rtol=1e-10, atol=1e-14)
    flip_grad = flips.grad.numpy() if flips.grad is not None else np.zeros_like(g)
    np.testing.assert_allclose(dg / batch, flip_grad, rtol=1e-10, atol=1e-14)
    assert np.abs(ds).sum() > 0 and (loss != "nbpo" or np.abs(dg).sum() > 0)


def test_softplus_sigmoid_is_softplus_and_sigmoid_from_one_exponential():
    points = np.concatenate([np.random.default_rng(0).normal(0.0, 8.0, 2000), [0.0, -0.0, 1e-300, -1e-300, 36.0,
                                                                              -36.0, 750.0, -750.0]])
    for x in points.tolist():
        assert softplus_sigmoid(x) == (softplus_scalar(x), sigmoid_scalar(x)), x


def test_tce_drops_the_largest_with_ties_to_the_earliest():
    losses = np.array([0.5, 2.0, 1.0, 2.0, 2.0, 0.1])
    dropped, scratch = np.zeros(6, dtype=bool), np.zeros(6)
    tce_dropped(losses, 2, dropped, scratch)
    assert dropped.tolist() == [False, True, False, True, False, False]
    tce_dropped(losses, 4, dropped, scratch)
    assert dropped.tolist() == [False, True, True, True, True, False]
    assert losses.tolist() == [0.5, 2.0, 1.0, 2.0, 2.0, 0.1]  # only read (the selection reorders the scratch)


def _train(seed=0, n_users=30, n_items=40, density=0.2):
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < density
    dense[np.arange(n_users), rng.integers(0, n_items, n_users)] = True  # every user has an item
    return sp.csr_matrix(dense.astype(np.float32))


def _one_batch(config, train):
    """The model after one kernel step on one batch holding every training row, that batch (users, items)
    and its loss."""
    model = fuse(new_model(config, *train.shape), optimizer=config.optimizer, lr=config.lr, device=torch.device("cpu"))
    engine = KernelEngine(model, config, train)
    assert engine.n_batches == 1
    loss = engine.run_epoch(1, np.random.default_rng(5), step=0)
    rows = train.nnz
    return model, engine.workspace.users[0, :rows].copy(), engine.workspace.items[0, :rows].copy(), loss


@pytest.mark.parametrize("optimizer", CPU_OPTIMIZERS)
@pytest.mark.parametrize("loss", LOSSES)
def test_a_kernel_step_is_the_fbgemm_step_on_the_same_batch(loss, optimizer):
    train = _train()
    config = TrainConfig(loss=loss, optimizer=optimizer, dim=8, phi_dim=4, batch_size=train.nnz, n_negatives=2,
                         lr=0.1, l2=0.01, phi_l2=0.05, phi_prior=0.2, tce_warmup_steps=0, tce_max_drop=0.3,
                         init_std=0.3, epochs=1, eval_every=0, engine="kernel")
    start = fuse(new_model(config, *train.shape), optimizer=optimizer, lr=config.lr, device=torch.device("cpu"))
    stepped, users, items, kernel_loss = _one_batch(config, train)
    output = start(torch.from_numpy(users), torch.from_numpy(items))
    loss = objective_loss(output, config, step=0)
    loss.backward()  # FBGEMM's fused update in the backward
    assert kernel_loss == pytest.approx(loss.item(), rel=1e-5)
    got, expected = stepped.state_dict(), start.state_dict()
    moved = 0.0
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=1e-4, atol=1e-6, msg=key)
        moved = max(moved, (value - new_model(config, *train.shape).state_dict()[key]).abs().max().item())
    assert moved > 1e-3  # the step did move the weights
    for name, state in optimizer_state(start).items():
        for table, values in state["state"].items():
            for key, tensor in values.items():
                torch.testing.assert_close(optimizer_state(stepped)[name]["state"][table][key], tensor, rtol=1e-4,
                                           atol=1e-9, msg=f"{table} {key}")


@pytest.mark.parametrize("loss", LOSSES)
def test_consecutive_kernel_steps_are_the_fbgemm_steps(loss):
    """Three batches in a row (one per epoch): the kernel's slot buffers carry nothing from one batch into the
    next (entities seen twice in a batch sum their terms in slots that earlier batches used too)."""
    train = _train()
    config = TrainConfig(loss=loss, dim=8, phi_dim=4, batch_size=train.nnz, n_negatives=2, lr=0.1, l2=0.01,
                         phi_l2=0.05, phi_prior=0.2, tce_warmup_steps=0, tce_max_drop=0.3, init_std=0.3, epochs=3,
                         eval_every=0, engine="kernel")
    device = torch.device("cpu")
    stepped = fuse(new_model(config, *train.shape), optimizer=config.optimizer, lr=config.lr, device=device)
    reference = fuse(new_model(config, *train.shape), optimizer=config.optimizer, lr=config.lr, device=device)
    engine = KernelEngine(stepped, config, train)
    rng = np.random.default_rng(5)
    for epoch in (1, 2, 3):
        engine.run_epoch(epoch, rng, step=epoch - 1)
        users, items = engine.workspace.users[0, :train.nnz], engine.workspace.items[0, :train.nnz]
        output = reference(torch.from_numpy(users.copy()), torch.from_numpy(items.copy()))
        objective_loss(output, config, step=epoch - 1).backward()
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(stepped.state_dict()[key], value, rtol=1e-4, atol=1e-5, msg=key)


@pytest.mark.parametrize("loss", LOSSES)
def test_one_row_batches_train_as_one_general_kernel_batch_after_another(loss):
    """Batch size 1 trains one row at a time without the mini-batch bookkeeping (kernels._train_rows); the same
    rows as the general path's one-row batches, the same steps, repeated unobserved items of a row summed."""
    train = _train(n_users=250, n_items=10, density=0.3)  # few unobserved items: the 3 negatives of a row repeat
    config = TrainConfig(loss=loss, dim=8, phi_dim=4, batch_size=1, n_negatives=3, lr=0.1, l2=0.01, phi_l2=0.05,
                         phi_prior=0.2, tce_max_drop=0.0, init_std=0.3, epochs=1, eval_every=0, engine="kernel",
                         deterministic=True)
    device = torch.device("cpu")
    models = [fuse(new_model(config, *train.shape), optimizer=config.optimizer, lr=config.lr, device=device)
              for _ in range(2)]
    fast, general = KernelEngine(models[0], config, train), KernelEngine(models[1], config, train)
    assert fast.n_batches == train.nnz > 2 * kernels._ROW_RUN
    fast_loss = fast.run_epoch(1, np.random.default_rng(5), step=0)
    key = np.uint64(np.random.default_rng(5).integers(0, 2**64, dtype=np.uint64))
    general_loss, repeats = 0.0, 0
    for batch in range(train.nnz):
        general_loss += kernels._train_batch(0, batch, key, 0.0, general.settings, general.tables, general.states,
                                             general.indptr, general.indices, general.row_users, general.active_users,
                                             general.workspace)
        negatives = general.workspace.items[0, 0, 1:]
        repeats += len(set(negatives.tolist())) < len(negatives)
    assert repeats > 10
    assert fast_loss == pytest.approx(general_loss, rel=1e-5)
    for key_name, value in models[1].state_dict().items():
        torch.testing.assert_close(models[0].state_dict()[key_name], value, rtol=1e-5, atol=1e-6, msg=key_name)
    moved = (models[0].user_tables.local_weight("preference")
             - fuse(new_model(config, *train.shape), optimizer=config.optimizer, lr=config.lr,
                    device=device).user_tables.local_weight("preference")).abs().max()
    assert moved > 1e-2


def test_uniform_epoch_visits_every_interaction_once_with_unobserved_negatives():
    train = _train(density=0.6)  # dense rows: many draws would hit positives without the exact draw
    config = TrainConfig(dim=4, batch_size=train.nnz, n_negatives=3, epochs=1, eval_every=0, engine="kernel")
    _, users, items, _ = _one_batch(config, train)
    assert sorted(zip(users, items[:, 0])) == sorted(zip(*train.nonzero()))
    dense = train.toarray() > 0
    assert not dense[users[:, None], items[:, 1:]].any()
    assert (items[:, 1:] >= 0).all() and (items[:, 1:] < train.shape[1]).all()


def test_unobserved_draw_is_exact_and_uniform():
    row = np.array([1, 0, 1, 1, 0, 0, 1, 0], dtype=np.float32)  # unobserved: 1, 4, 5, 7
    train = sp.csr_matrix(row[None, :])
    indptr, indices = train.indptr.astype(np.int64), train.indices.astype(np.int32)
    drawn = [kernels.unobserved_item(indptr, indices, 8, 0, u) for u in (np.arange(8000) + 0.5) / 8000]
    values, counts = np.unique(drawn, return_counts=True)
    assert values.tolist() == [1, 4, 5, 7] and counts.tolist() == [2000] * 4


def test_unobserved_item_matches_a_brute_force_on_every_rank():
    """The branch-free search returns the r-th unobserved item for every rank r, every degree from 0 to
    n_items - 1 (odd and even lengths, items at both ends)."""
    rng = np.random.default_rng(0)
    for n_items in (2, 3, 16, 17, 40):
        for degree in range(n_items):
            items = np.sort(rng.choice(n_items, degree, replace=False)).astype(np.int32)
            free = np.setdiff1d(np.arange(n_items), items)
            indptr = np.array([0, degree], dtype=np.int64)
            drawn = [kernels.unobserved_item(indptr, items, n_items, 0, (r + 0.5) / len(free)) for r in range(len(free))]
            assert drawn == free.tolist(), (n_items, items.tolist())


@pytest.mark.parametrize("n", [1, 2, 3, 17, 1000, 4097])
def test_the_epoch_permutation_is_a_bijection(n):
    image = [kernels.permuted(i, n, kernels.half_bits(n), np.uint64(12345)) for i in range(n)]
    assert sorted(image) == list(range(n))
    if n > 16:
        assert image != list(range(n)) and abs(np.corrcoef(image, np.arange(n))[0, 1]) < 0.2


@pytest.mark.parametrize("tau", [0.5, 0.3])  # 1/τ whole (the fast σ^(1/τ) form) and not
def test_pld_draws_candidates_by_softmax_of_minus_loss_over_tau(tau):
    """Identical users with items 0..4: the kernel's chosen item follows softmax(−softplus(s_uj − s_uc)/τ)."""
    n_users, n_items = 4000, 12
    train = sp.csr_matrix(np.tile((np.arange(n_items) < 5).astype(np.float32), (n_users, 1)))
    config = TrainConfig(sampler="pld", pld_warmup_epochs=0, pld_temperature=tau, pld_pool_size=5, dim=4,
                         batch_size=train.nnz, epochs=1, eval_every=0, engine="kernel", lr=1e-9)
    model = fuse(new_model(config, n_users, n_items), optimizer=config.optimizer, lr=config.lr,
                 device=torch.device("cpu"))
    item_scores = np.array([2.0, 1.0, 0.0, -1.0, 0.5] + [0.0] * 7, dtype=np.float32)
    with torch.no_grad():  # s_ui = item_scores[i] for every user
        model.user_tables.local_weight("preference").copy_(torch.tensor([1.0, 0, 0, 0]))
        weights = torch.zeros(n_items, 4)
        weights[:, 0] = torch.from_numpy(item_scores)
        model.item_tables.local_weight("preference").copy_(weights)
    engine = KernelEngine(model, config, train)
    engine.run_epoch(1, np.random.default_rng(0), step=0)
    chosen, negatives = engine.workspace.items[0, : train.nnz, 0], engine.workspace.items[0, : train.nnz, 1]
    assert set(negatives.tolist()) <= set(range(5, n_items))
    losses = np.logaddexp(0, 0.0 - item_scores[:5])  # s_uj = 0 for every unobserved j
    target = np.exp(-losses / tau) / np.exp(-losses / tau).sum()
    freq = np.bincount(chosen, minlength=n_items)[:5] / chosen.size
    np.testing.assert_allclose(freq, target, atol=0.01)


def test_pld_pool_is_distinct_when_the_user_has_k_items():
    """With exactly k items the pool is all of them: every candidate with equal loss is picked equally."""
    n_users, n_items = 3000, 9
    train = sp.csr_matrix(np.tile((np.arange(n_items) < 5).astype(np.float32), (n_users, 1)))
    config = TrainConfig(sampler="pld", pld_warmup_epochs=0, pld_pool_size=5, dim=4, batch_size=train.nnz,
                         epochs=1, eval_every=0, engine="kernel")
    model = fuse(new_model(config, n_users, n_items), optimizer=config.optimizer, lr=config.lr,
                 device=torch.device("cpu"))
    engine = KernelEngine(model, config, train)
    for table in engine.tables:  # all scores 0: every candidate's loss is equal
        table[:] = 0.0
    engine.run_epoch(1, np.random.default_rng(1), step=0)
    freq = np.bincount(engine.workspace.items[0, : train.nnz, 0], minlength=n_items) / train.nnz
    np.testing.assert_allclose(freq[:5], 0.2, atol=0.01)


@pytest.fixture(scope="module")
def small_split():
    return data.generate(n_users=300, n_items=200, seed=3)


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("loss,sampler,batch_size", [("bpr", "uniform", 256), ("nbpo", "uniform", 256),
                                                     ("tce", "pld", 256), ("nbpo", "pld", 1)])
def test_deterministic_reruns_are_bit_identical_whatever_the_thread_count(small_split, loss, sampler, batch_size):
    config = TrainConfig(loss=loss, sampler=sampler, pld_warmup_epochs=1, tce_warmup_steps=5, epochs=3, dim=8,
                         batch_size=batch_size, eval_every=0, engine="kernel", deterministic=True)
    threads = torch.get_num_threads()
    try:
        runs = []
        for n in (1, 2, 1):
            torch.set_num_threads(n)
            runs.append(fit(config, small_split.train.matrix, progress=False))
    finally:
        torch.set_num_threads(threads)
    for run in runs[1:]:
        assert [h["loss"] for h in run.history] == [h["loss"] for h in runs[0].history]
        for key, value in _weights(runs[0].model).items():
            assert torch.equal(value, _weights(run.model)[key]), key
    other_seed = fit(TrainConfig(**{**config.to_dict(), "seed": 1}), small_split.train.matrix, progress=False)
    assert not torch.equal(_weights(other_seed.model)["user_tables.collection.embedding_bags.user_preference.weight"],
                           _weights(runs[0].model)["user_tables.collection.embedding_bags.user_preference.weight"])


@pytest.mark.parametrize("optimizer", ["rowwise_adagrad", "adagrad"])
def test_resume_continues_exactly(small_split, tmp_path, optimizer):
    train = small_split.train.matrix
    settings = dict(dim=8, batch_size=256, eval_every=0, engine="kernel", optimizer=optimizer, sampler="pld",
                    pld_warmup_epochs=1, deterministic=True)
    full = fit(TrainConfig(epochs=4, **settings), train, run_dir=tmp_path / "full", progress=False)
    fit(TrainConfig(epochs=2, **settings), train, run_dir=tmp_path / "cut", progress=False)
    state = torch.load(tmp_path / "cut" / CHECKPOINT_FILE, weights_only=True)
    state["config"] = TrainConfig(epochs=4, **settings).to_dict()
    torch.save(state, tmp_path / "cut" / CHECKPOINT_FILE)
    resumed = fit(TrainConfig(epochs=4, **settings), train, run_dir=tmp_path / "cut", resume=True, progress=False)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    for key, value in _weights(full.model).items():
        assert torch.equal(value, _weights(resumed.model)[key]), key


@pytest.mark.parametrize("batch_size", [128, 1])
def test_hogwild_threads_train_like_one_thread(small_split, batch_size):
    """Several threads train whole mini-batches (or runs of one-row batches) concurrently (lock-free): not
    bit-identical, but as good."""
    import numba

    from robustrec.evaluate import ranking_metrics

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba's thread pool has one thread (NUMBA_NUM_THREADS=1)")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        recalls = {}
        for deterministic in (True, False):
            config = TrainConfig(epochs=6, dim=16, batch_size=batch_size, lr=0.05 if batch_size > 1 else 0.02,
                                 eval_every=0, deterministic=deterministic)
            fused = fuse(new_model(config, small_split.n_users, small_split.n_items), optimizer=config.optimizer,
                         lr=config.lr, device=torch.device("cpu"))
            assert KernelEngine(fused, config, small_split.train.matrix).n_threads == (1 if deterministic else 2)
            model = fit(config, small_split.train.matrix, progress=False).model
            users, items = model.embedding_matrices()
            recalls[deterministic] = ranking_metrics(users, items, small_split.train.matrix, small_split.test.matrix,
                                                     ks=(20,))["recall@20"]
    finally:
        torch.set_num_threads(threads)
    assert abs(recalls[False] - recalls[True]) < 0.1 * recalls[True], recalls


def test_kernel_learns_as_well_as_autograd(small_split):
    from robustrec.evaluate import ranking_metrics

    recalls = {}
    for engine in ("kernel", "autograd"):
        config = TrainConfig(epochs=8, dim=16, batch_size=256, eval_every=0, engine=engine)
        model = fit(config, small_split.train.matrix, progress=False).model
        users, items = model.embedding_matrices()
        recalls[engine] = ranking_metrics(users, items, small_split.train.matrix, small_split.test.matrix,
                                          ks=(20,))["recall@20"]
    assert recalls["kernel"] > 0.9 * recalls["autograd"], recalls


def test_auto_picks_the_kernel_for_mf_on_cpu_only():
    assert ENGINES == ("auto", "kernel", "autograd")
    assert resolve_engine(TrainConfig()) == "kernel"
    assert resolve_engine(TrainConfig(model="lightgcn")) == "autograd"
    with pytest.raises(ValueError, match="engine 'kernel' cannot train model 'lightgcn'"):
        TrainConfig(model="lightgcn", engine="kernel")
    with pytest.raises(ValueError, match="engine"):
        TrainConfig(engine="numba")


def test_a_non_finite_loss_stops_before_the_update(small_split):
    """lr 1e30: step 0 blows the weights up to ~1e27, step 1's loss overflows and its update is refused."""
    config = TrainConfig(epochs=3, dim=8, lr=1e30, optimizer="sgd", batch_size=1024, eval_every=0, engine="kernel",
                         deterministic=True)
    with pytest.raises(FloatingPointError, match="epoch 1, step 1"):
        fit(config, small_split.train.matrix, progress=False)
    model = fuse(new_model(config, small_split.n_users, small_split.n_items), optimizer="sgd", lr=config.lr,
                 device=torch.device("cpu"))
    with pytest.raises(FloatingPointError):
        KernelEngine(model, config, small_split.train.matrix).run_epoch(1, np.random.default_rng(0), step=0)
    weights = model.user_tables.local_weight("preference")
    assert torch.isfinite(weights).all() and weights.abs().max() > 1e20


def test_one_row_batches_stop_before_the_update_of_a_non_finite_loss(small_split):
    """lr 1e30: the first rows blow their weights up to ~1e27; the first row whose loss then overflows is refused
    (its update would write inf or NaN) and the epoch stops there."""
    config = TrainConfig(epochs=1, dim=8, lr=1e30, optimizer="sgd", batch_size=1, eval_every=0, engine="kernel",
                         deterministic=True)
    model = fuse(new_model(config, small_split.n_users, small_split.n_items), optimizer="sgd", lr=config.lr,
                 device=torch.device("cpu"))
    with pytest.raises(FloatingPointError, match=r"epoch 1, step [1-9]"):
        KernelEngine(model, config, small_split.train.matrix).run_epoch(1, np.random.default_rng(0), step=0)
    for side in ("user", "item"):
        weights = getattr(model, f"{side}_tables").local_weight("preference")
        assert torch.isfinite(weights).all()
    assert model.user_tables.local_weight("preference").abs().max() > 1e20


def test_the_loss_check_sees_the_first_non_finite_and_the_largest_loss_in_step_order():
    from robustrec.engines import _batches_to_check

    assert _batches_to_check(np.array([1.0, 5.0, np.nan, 1e12, np.inf, 2.0])) == [2, 3]
    assert _batches_to_check(np.array([1e12, np.inf, np.nan])) == [0, 1]
    assert _batches_to_check(np.array([0.5, -3.0, 1.0])) == [1]
    assert _batches_to_check(np.array([np.nan, np.nan])) == [0]


def test_an_epoch_after_a_stopped_batch_trains_like_a_fresh_engine():
    """A batch stopped by a non-finite loss leaves running sums of the entities it had not finished; the next
    epoch must not add them (it trains exactly as a new engine on the same weights)."""
    train = _train(n_users=60, n_items=30, density=0.3)
    config = TrainConfig(dim=8, batch_size=train.nnz, lr=0.1, l2=0.01, optimizer="sgd", epochs=2, eval_every=0,
                         engine="kernel", deterministic=True)
    device = torch.device("cpu")

    def new_engine(state=None):
        model = fuse(new_model(config, *train.shape), optimizer="sgd", lr=config.lr, device=device)
        if state is not None:
            model.load_state_dict(state)
        return model, KernelEngine(model, config, train)

    probe_model, probe = new_engine()
    initial = {key: value.clone() for key, value in probe_model.state_dict().items()}
    probe.run_epoch(1, np.random.default_rng(5), step=0)
    users = probe.workspace.users[0, :train.nnz]
    first_row = {user: row for row, user in reversed(list(enumerate(users.tolist())))}
    late_user = max(first_row, key=first_row.get)  # its first row comes after several chunks were applied
    assert first_row[late_user] >= 2 * kernels._CHUNK

    stopped_model, stopped = new_engine(initial)
    weights = stopped_model.user_tables.local_weight("preference")
    saved = weights[late_user].clone()
    weights[late_user] = float("nan")
    with pytest.raises(FloatingPointError):
        stopped.run_epoch(1, np.random.default_rng(5), step=0)
    weights[late_user] = saved
    assert np.abs(stopped.workspace.grad_items).max() > 0  # the stop left running sums behind
    fresh_model, fresh = new_engine(stopped_model.state_dict())
    for engine in (stopped, fresh):
        engine.run_epoch(2, np.random.default_rng(7), step=1)
    for key, value in fresh_model.state_dict().items():
        torch.testing.assert_close(stopped_model.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_the_compiled_code_cache_is_keyed_on_every_compiled_in_source(tmp_path, monkeypatch):
    """An edit of a module whose code a kernel compiles in (e.g. objectives.py) must invalidate numba's cache."""
    from robustrec import jit

    main, dependency, other = tmp_path / "kernel_module.py", tmp_path / "dependency.py", tmp_path / "other.py"
    main.write_text("def f():\n    return 1\n")
    dependency.write_text("X = 1\n")
    other.write_text("def g():\n    return 1\n")
    jit.register_sources(str(main), str(dependency))
    namespace = {}
    exec(compile(main.read_text(), str(main), "exec"), namespace)
    locator = jit._InTreeLocator.from_function(namespace["f"], str(main))
    before = locator.get_source_stamp()
    dependency.write_text("X = 2\n")
    assert locator.get_source_stamp() != before
    assert jit._InTreeLocator.from_function(namespace["f"], str(other)) is None  # numba's own locators apply
    assert jit._EnvironmentLocator.from_function(namespace["f"], str(main)) is None  # $ROBUSTREC_JIT_CACHE unset
    monkeypatch.setenv(jit.CACHE_ENV, str(tmp_path / "cache"))
    elsewhere = jit._EnvironmentLocator.from_function(namespace["f"], str(main))
    assert Path(elsewhere.get_cache_path()).parent == tmp_path / "cache"


def _allocates(n):
    return np.zeros(n).size


def test_a_function_compiled_without_reference_counts_runs_without_numbas_runtime():
    """refcounted=False (the training kernel's hot functions) reaches numba: without its runtime numba refuses a
    function that allocates, which it compiles otherwise. (Never compiled, so never cached: numba's cache keys
    on the source, not on such options.)"""
    from numba import njit
    from numba.core.errors import NumbaError

    from robustrec.jit import cached_njit

    assert njit(_allocates)(3) == 3
    with pytest.raises(NumbaError):
        cached_njit(refcounted=False)(_allocates)(3)


_ONE_DETERMINISTIC_EPOCH = """
import hashlib, numpy as np, torch
from robustrec.config import TrainConfig
from robustrec.data import generate
from robustrec.engines import KernelEngine
from robustrec.optim import fuse
from robustrec.training import new_model
train = generate(n_users=500, n_items=300, mean_activity=30, seed=0).train.matrix
config = TrainConfig(epochs=1, dim=16, batch_size=512, eval_every=0, deterministic=True)
model = fuse(new_model(config, *train.shape), optimizer=config.optimizer, lr=config.lr, device=torch.device("cpu"))
loss = KernelEngine(model, config, train).run_epoch(1, np.random.default_rng(0), step=0)
digest = hashlib.sha256(b"".join(v.numpy().tobytes() for _, v in sorted(model.state_dict().items())))
print(repr(loss), digest.hexdigest())
"""


def test_the_run_that_finds_the_cache_cold_trains_the_cached_build(tmp_path):
    """Deterministic runs reproduce bit for bit across processes, the first on an empty compiled-code cache
    included: it compiles in a child process and loads the cached build like every later run (the build numba
    keeps in memory after compiling differs in the last bits: fast-math sums ordered differently). The runs
    import a copy of the package that only their own sys.path names, as a script or notebook may: the child
    must compile that copy, not the one its own default path would find."""
    import robustrec
    from robustrec import jit

    copy = tmp_path / "checkout"
    shutil.copytree(Path(robustrec.__file__).parent, copy / "robustrec", ignore=shutil.ignore_patterns("__pycache__"))
    code = (f"import sys\nsys.path.insert(0, {str(copy)!r})\n{_ONE_DETERMINISTIC_EPOCH}\n"
            "import robustrec\nprint(robustrec.__file__)\n")
    env = {**os.environ, jit.CACHE_ENV: str(tmp_path / "cache")}
    env.pop(jit.FILLING_ENV, None)
    runs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                           check=True).stdout.split() for _ in range(2)]
    assert runs[0][-1] == str(copy / "robustrec" / "__init__.py")
    assert any((tmp_path / "cache").rglob("*.nbi"))  # the first run filled the cache
    assert runs[0] == runs[1]


@pytest.mark.parametrize("sampler", ["uniform", "pld"])
def test_the_sampling_profile_draws_the_rows_training_draws(small_split, sampler):
    """KernelEngine.sample_epoch (the profile's sampling part) draws exactly the rows training draws."""
    train = small_split.train.matrix
    config = TrainConfig(sampler=sampler, pld_warmup_epochs=0, dim=8, batch_size=train.nnz, eval_every=0,
                         deterministic=True)
    drawn = []
    for train_too in (False, True):  # one batch: drawn from the untrained tables both times
        model = fuse(new_model(config, small_split.n_users, small_split.n_items), optimizer=config.optimizer,
                     lr=config.lr, device=torch.device("cpu"))
        engine = KernelEngine(model, config, train)
        if train_too:
            engine.run_epoch(1, np.random.default_rng(4), step=0)
        else:
            engine.sample_epoch(1, np.random.default_rng(4))
        drawn.append((engine.workspace.users[0, : train.nnz].copy(), engine.workspace.items[0, : train.nnz].copy()))
    np.testing.assert_array_equal(drawn[0][0], drawn[1][0])
    np.testing.assert_array_equal(drawn[0][1], drawn[1][1])


def test_training_leaves_torchs_thread_count_as_the_user_set_it():
    """numba's OpenMP pool starts on the kernel's first use and may share torch's OpenMP runtime, resetting its
    thread count to numba's pool size: a fresh process shows whether fit restores it."""
    import subprocess
    import sys

    code = ("import torch; torch.set_num_threads(1)\n"
            "from robustrec import data\nfrom robustrec.config import TrainConfig\nfrom robustrec.training import fit\n"
            "train = data.generate(n_users=100, n_items=80, mean_activity=10, seed=0).train.matrix\n"
            "fit(TrainConfig(epochs=1, dim=8, batch_size=64, eval_every=0, engine='kernel'), train, progress=False)\n"
            "print(torch.get_num_threads())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == "1"
