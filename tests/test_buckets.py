"""Length-bucketed batches: every batch from one bucket, cut only padding, resumable, shardable, and a run."""
import json

import numpy as np
import pytest

from seqjax.data.iterators import ArrayIterator, eval_batches

LENGTHS = {"src": "src_lengths", "tgt": "tgt_lengths"}


def padded_split(n=40, width=8, seed=0):
    """Rows of ids 1.. padded with 0 to `width`: src length in [1, width], tgt length in [1, 6]."""
    rng = np.random.default_rng(seed)
    src_len = rng.integers(1, width + 1, n)
    tgt_len = rng.integers(1, 7, n)
    src = np.where(np.arange(width) < src_len[:, None], rng.integers(1, 9, (n, width)), 0)
    tgt = np.where(np.arange(7) < tgt_len[:, None], rng.integers(1, 9, (n, 7)), 0)
    return {"src": src, "src_lengths": src_len, "tgt": tgt, "tgt_lengths": tgt_len, "id": np.arange(n)}


def test_batches_come_from_one_bucket_and_cut_only_padding():
    arrays = padded_split()
    bs, nb = 4, 3
    it = ArrayIterator(arrays, bs, seed=1, lengths=LENGTHS, num_buckets=nb)
    total = arrays["src_lengths"] + arrays["tgt_lengths"]
    per_epoch = sum(int(c) // bs for c in np.bincount(it.bucket, minlength=nb))
    seen, shapes = [], set()
    for _ in range(per_epoch):
        b = next(it)
        ids = b["id"]
        buckets = set(it.bucket[ids].tolist())
        assert len(buckets) == 1, f"batch mixes buckets {buckets}"
        bucket = buckets.pop()
        # The widths are the bucket's longest rows, so nothing but padding is cut.
        for key, length_key in LENGTHS.items():
            width = b[key].shape[1]
            assert width == arrays[length_key][it.bucket == bucket].max()
            np.testing.assert_array_equal(b[key], arrays[key][ids, :width])
            assert not arrays[key][ids, width:].any()
        np.testing.assert_array_equal(b["src_lengths"], arrays["src_lengths"][ids])
        shapes.add((b["src"].shape, b["tgt"].shape))
        seen += ids.tolist()
    assert len(seen) == len(set(seen)), "a row repeated within one epoch"
    assert len(shapes) <= nb  # one compiled shape per bucket
    # Buckets partition the total length: every row of bucket b is no longer than any row of bucket b + 1.
    for b in range(nb - 1):
        assert total[it.bucket == b].max() < total[it.bucket == b + 1].min()
    # The next batch starts a new epoch.
    next(it)
    assert it.get_state()["epoch"] == 1


def test_bucketed_resume_and_process_shards():
    arrays = padded_split()
    kw = dict(seed=5, lengths=LENGTHS, num_buckets=2)
    it = ArrayIterator(arrays, 4, **kw)
    batches = [next(it) for _ in range(12)]  # crosses an epoch boundary
    it2 = ArrayIterator(arrays, 4, **kw)
    [next(it2) for _ in range(7)]
    it3 = ArrayIterator(arrays, 4, **kw)
    it3.set_state(json.loads(json.dumps(it2.get_state())))
    for want in batches[7:]:
        got = next(it3)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
    parts = [ArrayIterator(arrays, 4, process_index=i, process_count=2, **kw) for i in range(2)]
    for want in batches:
        got = [next(p) for p in parts]
        for k in want:
            np.testing.assert_array_equal(np.concatenate([g[k] for g in got]), want[k])


def test_one_bucket_is_the_plain_iterator():
    arrays = padded_split()
    a = ArrayIterator(arrays, 4, seed=2)
    b = ArrayIterator(arrays, 4, seed=2, lengths=LENGTHS, num_buckets=1)
    for _ in range(15):
        x, y = next(a), next(b)
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def test_bucketing_errors_name_the_problem():
    arrays = padded_split()
    with pytest.raises(ValueError, match="needs `lengths`"):
        ArrayIterator(arrays, 4, num_buckets=2)
    with pytest.raises(ValueError, match="'nope'"):
        ArrayIterator(arrays, 4, lengths={"src": "nope"}, num_buckets=2)
    with pytest.raises(ValueError, match="fewer than batch_size=16"):
        ArrayIterator(arrays, 16, lengths=LENGTHS, num_buckets=4)
    bad = dict(arrays, src_lengths=arrays["src_lengths"] + 1)
    with pytest.raises(ValueError, match="outside"):
        ArrayIterator(bad, 4, lengths=LENGTHS, num_buckets=2)
    with pytest.raises(ValueError, match="num_buckets"):
        ArrayIterator(arrays, 4, lengths=LENGTHS, num_buckets=0)


def test_trainer_runs_g2p_with_length_buckets(tmp_path):
    from experiments import g2p_rnn
    from seqjax import train

    config = g2p_rnn.get_config("smoke")
    config.train.length_buckets = 2
    summary = train.train_and_evaluate(config, str(tmp_path))
    assert summary["status"] == "completed" and summary["steps"] == config.train.steps
    assert np.isfinite(summary["final"]["val_loss"])

    from experiments import toy_smoke

    toy = toy_smoke.get_config("smoke")
    toy.train.length_buckets = 2
    with pytest.raises(ValueError, match="declares no padded_lengths"):
        train.train_and_evaluate(toy, str(tmp_path / "toy"))


@pytest.mark.parametrize("bad_length", [8, -1])  # the width of tgt_in is 7
def test_bad_lengths_in_a_task_split_are_rejected_when_the_loader_is_built(bad_length):
    """Inside the jitted step a length above T would act as T and a negative one as 0; the loaders check the
    lengths the task declares (`padded_lengths`) on the host, with or without bucketing."""
    from seqjax.tasks.g2p import G2PTask

    split = padded_split()
    split = {"src": split["src"], "src_lengths": split["src_lengths"], "tgt_in": split["tgt"],
             "tgt_out": split["tgt"], "tgt_lengths": split["tgt_lengths"]}
    ArrayIterator(split, 4, lengths=G2PTask.padded_lengths)  # the good split is accepted
    bad = dict(split, tgt_lengths=split["tgt_lengths"].copy())
    bad["tgt_lengths"][3] = bad_length
    match = r"train: 'tgt_lengths' has values in \[-?\d, \d\], outside \[0, 7\] \(the width of 'tgt_in'\)"
    with pytest.raises(ValueError, match=match):
        ArrayIterator(bad, 4, lengths=G2PTask.padded_lengths)
    with pytest.raises(ValueError, match=match.replace("train", "val")):
        eval_batches(bad, 4, lengths=G2PTask.padded_lengths)  # at the call, before any batch is drawn
