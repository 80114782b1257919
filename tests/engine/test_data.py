"""Data loaders on tiny generated files: every format, the shape checks, and the refusals."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from netspec.errors import EXIT_RUNTIME, NetspecError
from netspec.recipe import DataSpec
from netspec.training.batching import Batches
from netspec.training.data import (
    Dataset,
    fit_normalizer,
    load_data,
    override,
    prepare_targets,
    split,
    with_path,
)
from netspec.training.named import Named

RNG = np.random.default_rng(0)
X = RNG.uniform(0, 16, (12, 64)).astype(np.float32)
Y = RNG.integers(0, 10, 12)


def spec(**kw: object) -> DataSpec:
    return DataSpec.model_validate(kw)


def message(err: pytest.ExceptionInfo[NetspecError]) -> str:
    d = err.value.diagnostics[0]
    return f"{d.message} {d.hint or ''}"


def write_idx(path: Path, array: np.ndarray, code: int, compress: bool) -> None:
    big = array.astype(array.dtype.newbyteorder(">"))
    raw = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    raw += big.tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def test_npz_arrays_are_read_by_name_and_reshaped_to_the_network_input(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, feats=X, labels=Y)
    ds = load_data(spec(path=str(path), x="feats", y="labels"), (1, 8, 8))
    assert ds.x.shape == (12, 1, 8, 8) and ds.x.dtype == np.float32
    np.testing.assert_array_equal(ds.x.reshape(12, 64), X)
    np.testing.assert_array_equal(ds.y, Y)


def test_npy_pair_reads_features_and_labels_files(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", X.astype(np.float64))
    np.save(tmp_path / "y.npy", Y)
    s = spec(name="npy", x=str(tmp_path / "x.npy"), labels=str(tmp_path / "y.npy"))
    ds = load_data(s, (64,))
    assert ds.x.dtype == np.float32  # float64 files are read as the network's float32
    np.testing.assert_array_equal(ds.x, X)
    np.testing.assert_array_equal(ds.y, Y)
    auto = load_data(spec(path=str(tmp_path / "x.npy"), labels=str(tmp_path / "y.npy")), (64,))
    np.testing.assert_array_equal(auto.x, ds.x)


def test_csv_with_header_takes_the_label_column_by_name(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,label,b\n1,0,2\n3,1,4\n5,2,6\n", encoding="utf-8")
    ds = load_data(spec(path=str(path), y="label"), (2,))
    np.testing.assert_array_equal(ds.x, [[1, 2], [3, 4], [5, 6]])
    np.testing.assert_array_equal(ds.y, [0, 1, 2])


def test_csv_without_header_takes_the_label_column_by_index_or_the_last(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("0,1.5,2.5\n1,3.5,4.5\n", encoding="utf-8")
    first = load_data(spec(path=str(path), y=0), (2,))
    np.testing.assert_array_equal(first.x, [[1.5, 2.5], [3.5, 4.5]])
    np.testing.assert_array_equal(first.y, [0, 1])
    last = load_data(spec(path=str(path)), (2,))
    np.testing.assert_array_equal(last.y, [2.5, 4.5])


def test_csv_with_a_byte_order_mark_reads_its_first_cell_without_it(tmp_path: Path) -> None:
    """Excel's "CSV UTF-8" starts with U+FEFF: it must not become part of the first name."""
    named, bare = tmp_path / "named.csv", tmp_path / "bare.csv"
    named.write_text("a,b,c\n0,1,2\n1,3,4\n", encoding="utf-8-sig")
    bare.write_text("0,1,2\n1,3,4\n", encoding="utf-8-sig")
    assert named.read_bytes().startswith(b"\xef\xbb\xbf")
    ds = load_data(spec(path=str(named), y="a"), (2,))
    np.testing.assert_array_equal(ds.x, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(ds.y, [0, 1])
    no_header = load_data(spec(path=str(bare), y=0), (2,))  # "\ufeff0" was taken as a header
    np.testing.assert_array_equal(no_header.x, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(no_header.y, [0, 1])


def test_a_header_only_csv_says_it_has_no_data_rows(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,b,label\n", encoding="utf-8")
    with pytest.raises(NetspecError) as err:
        load_data(spec(path=str(path), y="label"), (2,))
    d = err.value.diagnostics[0]
    assert d.message == f"CSV file {path} has a header row (a, b, label) but no data rows"
    assert "one sample per row" in (d.hint or "") and err.value.exit_code == EXIT_RUNTIME


def test_csv_with_an_unknown_label_name_lists_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,b,c\n1,2,3\n", encoding="utf-8")
    with pytest.raises(NetspecError) as err:
        load_data(spec(path=str(path), y="target"), (2,))
    assert "'target'" in message(err) and "a, b, c" in message(err)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_files_plain_or_gzipped_are_read_like_mnist(tmp_path: Path, compress: bool) -> None:
    images = RNG.integers(0, 256, (5, 4, 4)).astype(np.uint8)
    labels = RNG.integers(0, 10, 5).astype(np.uint8)
    suffix = ".gz" if compress else ""
    write_idx(tmp_path / f"img-idx3-ubyte{suffix}", images, 0x08, compress)
    write_idx(tmp_path / f"lab-idx1-ubyte{suffix}", labels, 0x08, compress)
    s = spec(
        path=str(tmp_path / f"img-idx3-ubyte{suffix}"),
        labels=str(tmp_path / f"lab-idx1-ubyte{suffix}"),
    )
    ds = load_data(s, (1, 4, 4))
    np.testing.assert_array_equal(ds.x[:, 0], images)
    np.testing.assert_array_equal(ds.y, labels)


def test_idx_big_endian_floats_are_decoded(tmp_path: Path) -> None:
    values = RNG.normal(size=(3, 2)).astype(np.float32)
    write_idx(tmp_path / "x.idx", values, 0x0D, False)
    write_idx(tmp_path / "y.idx", np.arange(3, dtype=np.int32), 0x0C, False)
    ds = load_data(
        spec(name="idx", x=str(tmp_path / "x.idx"), labels=str(tmp_path / "y.idx")), (2,)
    )
    np.testing.assert_array_equal(ds.x, values)


def test_idx_size_mismatch_is_found_from_the_header_alone(tmp_path: Path) -> None:
    # Header says 1000 images of 28x28 but no pixel data follows: the check must not read it.
    head = bytes([0, 0, 0x08, 3]) + struct.pack(">3i", 1000, 28, 28)
    (tmp_path / "x.idx").write_bytes(head)
    write_idx(tmp_path / "y.idx", np.zeros(1000, np.uint8), 0x08, False)
    with pytest.raises(NetspecError) as err:
        load_data(spec(path=str(tmp_path / "x.idx"), labels=str(tmp_path / "y.idx")), (1, 8, 8))
    text = message(err)
    assert "x.idx" in text and "[28, 28]" in text and "[1, 8, 8]" in text
    assert err.value.exit_code == EXIT_RUNTIME


def test_npy_size_mismatch_names_the_file_and_both_shapes(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((4, 10), np.float32))
    np.save(tmp_path / "y.npy", np.zeros(4, np.int64))
    with pytest.raises(NetspecError) as err:
        load_data(spec(path=str(tmp_path / "x.npy"), labels=str(tmp_path / "y.npy")), (3, 3))
    assert "x.npy" in message(err) and "[10]" in message(err) and "[3, 3]" in message(err)
    assert err.value.exit_code == EXIT_RUNTIME


def test_features_and_labels_of_different_lengths_are_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=X, y=Y[:5])
    with pytest.raises(NetspecError, match="5 samples but the features have 12"):
        load_data(spec(path=str(tmp_path / "d.npz")), (64,))


def test_npz_with_object_arrays_is_refused_without_unpickling(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.array([{"a": 1}, None], dtype=object), y=np.zeros(2))
    with pytest.raises(NetspecError) as err:
        load_data(spec(path=str(tmp_path / "d.npz")), (1,))
    assert "objects" in message(err) and err.value.exit_code == EXIT_RUNTIME


def test_missing_array_in_npz_lists_the_arrays_it_has(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", images=X, y=Y)
    with pytest.raises(NetspecError) as err:
        load_data(spec(path=str(tmp_path / "d.npz")), (64,))
    assert "'x'" in message(err) and "images" in message(err)


def test_missing_file_says_paths_are_relative_to_the_spec(tmp_path: Path) -> None:
    with pytest.raises(NetspecError) as err:
        load_data(spec(path=str(tmp_path / "nope.npz")), (64,))
    assert "does not exist" in message(err) and "relative to the spec" in message(err)
    assert err.value.exit_code == EXIT_RUNTIME


def test_labels_outside_the_classifier_outputs_are_refused() -> None:
    with pytest.raises(NetspecError) as err:
        prepare_targets(np.array([0, 3, 10]), (10,), "classification", "d.npz")
    assert "0..10" in message(err) and "10 outputs" in message(err)


def test_one_hot_labels_become_class_indices() -> None:
    y = np.eye(4)[[2, 0, 3]]
    np.testing.assert_array_equal(prepare_targets(y, (4,), "classification", "d"), [2, 0, 3])


def test_regression_targets_take_the_output_shape() -> None:
    y = prepare_targets(np.arange(6.0), (1,), "regression", "d")
    assert y.shape == (6, 1) and y.dtype == np.float32


def test_split_is_seeded_and_disjoint() -> None:
    ds = Dataset(np.arange(20.0)[:, None], np.arange(20))
    train, val = split(ds, 0.25, np.random.default_rng(3))
    again, _ = split(ds, 0.25, np.random.default_rng(3))
    assert len(train) == 15 and len(val) == 5
    assert set(train.y) | set(val.y) == set(range(20)) and not set(train.y) & set(val.y)
    np.testing.assert_array_equal(train.y, again.y)


def test_standard_normalisation_uses_training_statistics_only() -> None:
    train = np.array([[0.0, 5.0], [2.0, 5.0]], np.float32)
    norm = fit_normalizer(train, "standard")
    assert norm is not None
    np.testing.assert_allclose(norm(train), [[-1, 0], [1, 0]])  # constant column: centred only
    np.testing.assert_allclose(norm(np.array([[4.0, 6.0]], np.float32)), [[3, 1]])


@pytest.mark.parametrize(
    ("mode", "expected"), [("minmax", [[0, 0.5, 1]]), ("scale255", [[0, 0.5, 1]])]
)
def test_minmax_and_scale255_map_to_the_unit_interval(mode: str, expected: list[float]) -> None:
    x = np.array([[0.0], [127.5], [255.0]], np.float32)
    norm = fit_normalizer(x, mode)
    assert norm is not None
    np.testing.assert_allclose(norm(x).T, expected)


@pytest.mark.parametrize("named", [False, True])
def test_batches_cover_every_sample_once_in_a_seeded_order(named: bool) -> None:
    """The epoch's order is rng.permutation's (a run's stream as it always was), its batches
    consecutive runs of it, the last one short, and the targets returned in that order."""
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    y = np.arange(10, dtype=np.int64) * 7
    data = (Named({"a": x}), Named({"b": y})) if named else (x, y)
    batches = Batches(*data, 4)
    assert len(batches) == 3
    for rng in (np.random.default_rng(1), None):
        order = np.random.default_rng(1).permutation(10) if rng is not None else np.arange(10)
        pairs, seen = batches.epoch(rng)
        parts = list(pairs)
        xs = [p[0].arrays["a"] if named else p[0] for p in parts]
        ys = [p[1].arrays["b"] if named else p[1] for p in parts]
        assert [len(b) for b in ys] == [4, 4, 2]
        np.testing.assert_array_equal(np.concatenate(xs), x[order])
        np.testing.assert_array_equal(np.concatenate(ys), y[order])
        np.testing.assert_array_equal(seen.arrays["b"] if named else seen, y[order])


def test_batches_gather_into_the_same_buffers_every_epoch() -> None:
    """Plain arrays are gathered once per epoch into two arrays held for the run: a batch is
    a view of them, and no epoch allocates another copy of the training split."""
    x = np.random.default_rng(0).normal(size=(9, 3)).astype(np.float32)
    y = np.arange(9)
    batches, rng = Batches(x, y, 4), np.random.default_rng(2)
    buffers = set()
    for _ in range(3):
        pairs, seen = batches.epoch(rng)
        for bx, by in pairs:
            assert bx.base is not None and by.base is seen  # views of the epoch's arrays
            buffers.add((id(bx.base), id(seen)))
        assert sorted(seen) == list(range(9))
    assert len(buffers) == 1
    np.testing.assert_array_equal(
        x, np.random.default_rng(0).normal(size=(9, 3)).astype(np.float32)
    )


def test_batches_in_the_arrays_order_are_views_of_them() -> None:
    """shuffle = false: no epoch copies the training split; every batch is a slice of it."""
    x = np.arange(24, dtype=np.float32).reshape(8, 3)
    y = np.arange(8)
    pairs, seen = Batches(x, y, 3).epoch(None)
    for bx, by in pairs:
        assert np.shares_memory(bx, x) and np.shares_memory(by, y)
    assert seen is y


def test_targets_as_large_as_the_features_are_not_held_a_second_time() -> None:
    """An autoencoder's targets (`targets = inputs`): the features are gathered into the
    held array, the targets per epoch, so the run holds one extra copy of the split, not two."""
    x = np.random.default_rng(0).normal(size=(600, 512)).astype(np.float32)  # 1.2 MB
    batches, rng = Batches(x, x.copy(), 100), np.random.default_rng(3)
    order = np.random.default_rng(3).permutation(600)
    pairs, seen = batches.epoch(rng)
    assert batches.bx is not None and batches.by is None
    parts = list(pairs)
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), x[order])
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), x[order])
    np.testing.assert_array_equal(seen, x[order])


def test_data_override_keeps_the_recipe_options(tmp_path: Path) -> None:
    base = spec(name="csv", path="a.csv", y="label", normalize="minmax")
    moved = with_path(base, tmp_path / "b.csv")
    assert moved.path == str(tmp_path / "b.csv") and moved.y == "label"
    assert moved.normalize == "minmax"


def test_data_override_in_another_format_is_read_in_that_format(tmp_path: Path) -> None:
    """`--data digits.csv` for a recipe of .npz data: the new file's extension decides, the
    normalisation stays, and the new format's default names apply (`--y` names others)."""
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("a,label,b\n1,0,2\n3,1,4\n", encoding="utf-8")
    recipe = spec(name="npz", path="train.npz", x="images", y="label", normalize="standard")
    moved = with_path(recipe, csv_path)
    assert moved == spec(path=str(csv_path), normalize="standard")
    moved = override(recipe, csv_path, None, "label")
    assert moved == spec(path=str(csv_path), y="label", normalize="standard")
    ds = load_data(moved, (2,))
    np.testing.assert_array_equal(ds.x, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(ds.y, [0, 1])

    np.savez(tmp_path / "d.npz", x=X, y=Y)
    by_index = spec(path="a.csv", y=0, normalize="minmax")  # a column index names no array
    back = with_path(by_index, tmp_path / "d.npz")
    assert back == spec(path=str(tmp_path / "d.npz"), normalize="minmax")
    np.testing.assert_array_equal(load_data(back, (64,)).y, Y)

    pair = spec(name="idx", x="images.idx", labels="labels.idx", normalize="scale255")
    assert with_path(pair, tmp_path / "d.npz") == spec(
        path=str(tmp_path / "d.npz"), normalize="scale255"
    )


def test_data_override_in_the_recipes_format_or_of_unknown_type_keeps_every_option(
    tmp_path: Path,
) -> None:
    recipe = spec(path="train.npz", x="images", y="labels", normalize="standard")
    same = with_path(recipe, tmp_path / "other.npz")
    assert (same.x, same.y, same.normalize) == ("images", "labels", "standard")
    unknown = with_path(recipe, tmp_path / "other.bin")  # read as the recipe's npz data
    assert unknown.name == "npz" and unknown.path == str(tmp_path / "other.bin")
    assert (unknown.x, unknown.y, unknown.normalize) == ("images", "labels", "standard")
    pair = spec(name="idx", x="images.idx", labels="labels.idx")
    features = with_path(pair, tmp_path / "t10k-images-idx3-ubyte")
    assert features.x == str(tmp_path / "t10k-images-idx3-ubyte")
    assert features.labels == "labels.idx"
    auto_pair = spec(path="x.npy", labels="y.npy")  # a plain path names the features file
    assert with_path(auto_pair, tmp_path / "x2.npy") == spec(
        path=str(tmp_path / "x2.npy"), labels="y.npy"
    )


def test_data_override_with_one_file_of_a_two_file_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NetspecError) as err:
        with_path(spec(path="train.npz"), tmp_path / "x.npy")
    d = err.value.diagnostics[0]
    assert d.message == (
        f"--data {tmp_path / 'x.npy'} names one .npy file, but npy data is a pair of files: "
        "features and labels"
    )
    assert 'npy("x.npy", "labels.npy")' in (d.hint or "") and err.value.exit_code == EXIT_RUNTIME


# ---- (N, K) classification targets: one-hot, probabilities, or refused --------------------------


def test_soft_targets_are_kept_as_probabilities_when_the_loss_takes_them() -> None:
    y = np.array([[0.25, 0.75, 0.0], [0.0, 1.0, 0.0], [0.1, 0.2, 0.7]], np.float64)
    soft = prepare_targets(y, (3,), "classification", "d.npz", soft=True)
    assert soft.shape == (3, 3) and soft.dtype == np.float32
    np.testing.assert_array_equal(soft, y.astype(np.float32))


def test_one_hot_rows_become_class_indices_even_where_soft_targets_are_allowed() -> None:
    y = np.eye(3, dtype=np.float32)[[1, 2, 0]]
    np.testing.assert_array_equal(
        prepare_targets(y, (3,), "classification", "d", soft=True), [1, 2, 0]
    )


def test_soft_targets_train_cross_entropy_and_score_metrics_by_their_argmax() -> None:
    from netspec.losses import CrossEntropy
    from netspec.recipe import Metric
    from netspec.training.metrics import compute_metrics

    y = prepare_targets(
        np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]), (2,), "classification", "d", soft=True
    )
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0]], np.float32)
    loss, grad = CrossEntropy()(logits, y)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    assert loss == pytest.approx(-float(np.sum(y * logp)) / 3, rel=1e-6)
    np.testing.assert_allclose(grad, (np.exp(logp) - y) / 3, rtol=1e-5, atol=1e-7)
    scores = compute_metrics([Metric(name="accuracy")], logits, y, "classification")
    assert scores["accuracy"] == pytest.approx(2 / 3)  # true classes 0, 1, 0; predicted 0, 1, 1


def test_soft_targets_are_refused_for_a_loss_that_needs_one_class_per_sample() -> None:
    y = np.array([[0.0, 1.0], [0.4, 0.6]])
    with pytest.raises(NetspecError) as err:
        prepare_targets(y, (2,), "classification", "d.npz")
    d = err.value.diagnostics[0]
    assert d.message == (
        "d.npz: target row 1 holds probabilities [0.4, 0.6], not a one-hot class, "
        "and this loss needs one class per sample"
    )
    assert "cross_entropy" in (d.hint or "") and err.value.exit_code == EXIT_RUNTIME


@pytest.mark.parametrize(
    ("rows", "why"),
    [
        ([[0, 1, 0], [0, 0, 0], [0, 0, 0]], "target row 1 is all zeros, so it names no class"),
        ([[0, 1, 0], [0, 0.5, 3]], "target row 1 sums to 3.5, not 1"),
        ([[1, 1, 0]], "target row 0 sums to 2, not 1"),
        ([[0, 1, 0], [1, 0, 0], [-0.5, 1, 0.5]], "target row 2 has a negative value (-0.5)"),
    ],
)
def test_rows_that_are_neither_one_hot_nor_probabilities_are_refused_by_row(
    rows: list[list[float]], why: str
) -> None:
    """They were argmaxed: all-zero rows became class 0, [0, 0.5, 3] became class 2."""
    for soft in (False, True):
        with pytest.raises(NetspecError) as err:
            prepare_targets(np.array(rows, float), (3,), "classification", "d.npz", soft=soft)
        d = err.value.diagnostics[0]
        assert d.message == f"d.npz: {why}"
        assert "one-hot" in (d.hint or "") and err.value.exit_code == EXIT_RUNTIME


# ---- gzip --------------------------------------------------------------------------------------


def test_a_gzipped_idx_whose_header_claims_billions_of_samples_is_truncated_not_out_of_memory(
    tmp_path: Path,
) -> None:
    head = bytes([0, 0, 0x08, 3]) + struct.pack(">3i", 2_000_000_000, 4, 4)
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(head + bytes(40 * 16)))
    write_idx(tmp_path / "y-idx1-ubyte", np.zeros(40, np.uint8), 0x08, False)
    with pytest.raises(NetspecError) as err:
        load_data(spec(path=str(path), labels=str(tmp_path / "y-idx1-ubyte")), (4, 4))
    d = err.value.diagnostics[0]
    assert d.message == (
        f"IDX file {path} is truncated: its header declares [2000000000, 4, 4] "
        "(32,000,000,000 bytes) but 640 bytes follow"
    )
    assert "truncated or corrupt" in (d.hint or "") and err.value.exit_code == EXIT_RUNTIME


def test_a_gzipped_idx_with_data_past_its_declared_size_is_refused_like_a_plain_one(
    tmp_path: Path,
) -> None:
    head = bytes([0, 0, 0x08, 1]) + struct.pack(">i", 3)
    path = tmp_path / "y-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(head + bytes(5)))
    write_idx(tmp_path / "x-idx2-ubyte", np.zeros((3, 2), np.uint8), 0x08, False)
    with pytest.raises(NetspecError) as err:
        load_data(spec(path=str(tmp_path / "x-idx2-ubyte"), labels=str(path)), (2,))
    assert err.value.diagnostics[0].message == (
        f"IDX file {path} declares [3] (3 bytes) but more data follows"
    )
    assert err.value.exit_code == EXIT_RUNTIME


def test_a_corrupt_gzip_idx_stream_is_a_message_not_a_zlib_traceback(tmp_path: Path) -> None:
    raw = gzip.compress(bytes([0, 0, 0x08, 1]) + struct.pack(">i", 5000) + bytes(range(256)) * 20)
    path = tmp_path / "y-idx1-ubyte.gz"
    path.write_bytes(raw[:10] + bytes(8) + raw[18:])  # zlib: "invalid stored block lengths"
    write_idx(tmp_path / "x-idx2-ubyte", np.zeros((5000, 2), np.uint8), 0x08, False)
    with pytest.raises(NetspecError) as err:
        load_data(spec(path=str(tmp_path / "x-idx2-ubyte"), labels=str(path)), (2,))
    assert err.value.diagnostics[0].message.startswith(f"cannot read IDX file {path}: ")
    assert err.value.exit_code == EXIT_RUNTIME


@pytest.mark.parametrize("name", ["d.csv.gz", "d.tsv.gz"])
def test_gzipped_csv_is_read_like_plain_csv(tmp_path: Path, name: str) -> None:
    sep = "\t" if ".tsv" in name else ","
    text = f"a{sep}label{sep}b\n1{sep}0{sep}2\n3{sep}1{sep}4\n"
    (tmp_path / name).write_bytes(gzip.compress(text.encode("utf-8-sig")))
    ds = load_data(spec(path=str(tmp_path / name), y="label"), (2,))
    np.testing.assert_array_equal(ds.x, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(ds.y, [0, 1])


def test_a_truncated_gzipped_csv_says_so(tmp_path: Path) -> None:
    path = tmp_path / "d.csv.gz"
    path.write_bytes(gzip.compress(b"a,b\n" + b"1,2\n" * 1000)[:-12])
    with pytest.raises(NetspecError) as err:
        load_data(spec(path=str(path), y="b"), (1,))
    assert err.value.diagnostics[0].message.startswith(f"cannot read CSV file {path}: ")
    assert err.value.exit_code == EXIT_RUNTIME


@pytest.mark.parametrize("fmt", ["npy", "npz"])
def test_gzipped_npy_and_npz_are_refused_with_a_way_out(tmp_path: Path, fmt: str) -> None:
    plain = tmp_path / f"x.{fmt}"
    if fmt == "npy":
        np.save(plain, X)
        np.save(tmp_path / "y.npy", Y)
    else:
        np.savez(plain, x=X, y=Y)
    path = tmp_path / f"x.{fmt}.gz"
    path.write_bytes(gzip.compress(plain.read_bytes()))
    with pytest.raises(NetspecError) as err:
        load_data(spec(path=str(path), labels=str(tmp_path / "y.npy")), (64,))
    d = err.value.diagnostics[0]
    assert d.message == (
        f"{path} is gzip-compressed; gzip is read for IDX and CSV files, not .{fmt}"
    )
    assert f"gunzip {path.name}" in (d.hint or "") and err.value.exit_code == EXIT_RUNTIME


@pytest.mark.parametrize(
    "ids",
    [
        np.array([["3", "1"], ["2", "0"]]),
        np.array([[1 + 0j, 2], [3, 0]]),
        np.array([["2020-01-01", "2020-01-02"]] * 2, dtype="datetime64[D]"),
        np.array([[True, False], [False, True]]),
    ],
    ids=["text", "complex", "datetime", "bool"],
)
def test_token_ids_that_are_not_numbers_are_refused_for_an_int64_input(
    tmp_path: Path, ids: np.ndarray
) -> None:
    np.savez(tmp_path / "d.npz", x=ids, y=np.array([0, 1]))
    with pytest.raises(NetspecError) as err:
        load_data(spec(path=str(tmp_path / "d.npz")), (2,), "int64")
    assert err.value.exit_code == EXIT_RUNTIME
    assert f"dtype {ids.dtype}" in message(err) and "int64 token ids" in message(err)


def test_whole_float_token_ids_are_still_read_as_int64(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.array([[3.0, 1.0], [2.0, 0.0]]), y=np.array([0, 1]))
    d = load_data(spec(path=str(tmp_path / "d.npz")), (2,), "int64")
    assert d.x.dtype == np.int64 and d.x.tolist() == [[3, 1], [2, 0]]


def test_npz_data_for_a_csv_recipe_reads_the_npz_names_not_the_csv_column(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=X, y=Y, feats=X[:, ::-1], cls=Y[::-1])
    recipe = spec(name="csv", path="iris.csv", y="species")
    default = override(recipe, tmp_path / "d.npz", None, None)
    assert default is not None
    np.testing.assert_array_equal(load_data(default, (64,)).y, Y)
    renamed = override(recipe, tmp_path / "d.npz", "feats", "cls")
    assert renamed is not None
    named = load_data(renamed, (64,))
    np.testing.assert_array_equal(named.x, X[:, ::-1])
    np.testing.assert_array_equal(named.y, Y[::-1])
    assert override(spec(path="a.csv"), None, None, "2") == spec(path="a.csv", y=2)
    assert override(None, None, "x", None) is None  # the caller says the recipe names no data


def test_names_a_format_has_no_place_for_are_refused(tmp_path: Path) -> None:
    with pytest.raises(NetspecError) as err:
        override(spec(path="a.csv"), None, "feats", None)
    assert "--x names the features array of an .npz" in message(err)
    assert err.value.exit_code == EXIT_RUNTIME
    pair = spec(name="idx", x="images.idx", labels="labels.idx")
    with pytest.raises(NetspecError) as err:
        override(pair, None, None, "cls")
    assert "idx data has a labels file" in message(err)
