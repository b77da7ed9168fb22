"""privcity.models.save/load: released models round-trip bit for bit with their record ids,
hostile files are refused before anything is unpickled or allocated, and a failed write never
leaves a partial file."""
from __future__ import annotations

import io
import json
import os
import stat
import tracemalloc
import zipfile

import numpy as np
import pytest

from privcity import ModelFileError, PrivcityError, data
from privcity.data.federated import TEST_BASE
from privcity.models import (
    MLP,
    LinearRegression,
    ReleasedModel,
    SoftmaxRegression,
    load,
    record_ids,
    record_rows,
    save,
    train_local,
)
from privcity.models import io as model_io

RNG = np.random.default_rng(2024)
X = RNG.normal(size=(64, 5)).astype(np.float32)
Y_CLASS = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1).astype(np.int64)
Y_REG = (X @ np.arange(1.0, 6.0) + 0.1 * RNG.normal(size=64)).astype(np.float32)

MODELS = {
    "softmax": (SoftmaxRegression(n_features=5, n_classes=3, l2=0.01), Y_CLASS),
    "linear": (LinearRegression(n_features=5, l2=0.5), Y_REG),
    "mlp_classification": (MLP(n_features=5, hidden=7, n_outputs=3, task_type="classification"),
                           Y_CLASS),
    "mlp_regression": (MLP(n_features=5, hidden=4, n_outputs=1, task_type="regression",
                           l2=0.001, activation="tanh"), Y_REG),
}


def _trained(name: str):
    model, y = MODELS[name]
    params = train_local(model, model.init_params(3), X, y, epochs=5, batch_size=8, lr=0.05)
    return model, params, y


def _softmax_file(path, **kw) -> None:
    model = SoftmaxRegression(n_features=2, n_classes=2)
    save(path, model, np.arange(6, dtype=np.float32) / 10, **kw)


def _arrays(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _header_of(model) -> dict:
    return {"format": "privcity.model", "version": 1, "kind": type(model).__name__,
            "config": model._config(), "task_type": model.task_type,
            "n_features": model.n_features, "n_outputs": model.n_outputs,
            "n_params": model.n_params, "privcity": "0.1.0"}


def _header(path) -> dict:
    return json.loads(str(_arrays(path)["header"]))


def _rewrite(path, **changes) -> None:
    """Save the file's arrays again with some replaced (None removes one); pickling allowed so
    that tests can plant object arrays."""
    arrays = _arrays(path)
    arrays.update(changes)
    np.savez(path, allow_pickle=True, **{k: v for k, v in arrays.items() if v is not None})


def _with_header(path, **fields) -> None:
    header = _header(path)
    header.update(fields)
    _rewrite(path, header=np.array(json.dumps(header)))


def _refused(path, kind: str, *words: str) -> ModelFileError:
    with pytest.raises(ModelFileError) as info:
        load(path)
    assert info.value.kind == kind, str(info.value)
    assert str(path) in str(info.value)
    said = str(info.value).replace(str(path), "")  # the words must not match the path itself
    for word in words:
        assert word in said
    return info.value


# --- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_released_model_predicts_bit_for_bit_what_the_trained_one_does(tmp_path, name):
    # Prepare
    model, params, y = _trained(name)
    path = tmp_path / f"{name}.npz"

    # Execute
    save(path, model, params)
    released = load(path)

    # Assert
    assert type(released.model) is type(model) and repr(released.model) == repr(model)
    np.testing.assert_array_equal(released.params, params)
    assert released.params.dtype == np.float32
    np.testing.assert_array_equal(released.outputs(X), model.outputs(params, X))
    if model.task_type == "regression":
        np.testing.assert_array_equal(released.predict(X), model.predict(params, X))
        assert released.predict(X).dtype == np.float32
    else:
        np.testing.assert_array_equal(released.predict_proba(X), model.predict(params, X))
        labels = released.predict(X)
        assert labels.dtype == np.int64
        assert np.mean(labels == y) == model.score(params, X, y)
    assert released.n_features == 5 and released.task_type == model.task_type
    assert not released.diverged


@pytest.mark.parametrize("name", ["softmax", "mlp_classification"])
def test_class_probabilities_sum_to_one_per_row(tmp_path, name):
    # Prepare
    model, params, _ = _trained(name)
    save(tmp_path / "m.npz", model, params)

    # Execute
    proba = load(tmp_path / "m.npz").predict_proba(X)

    # Assert
    assert proba.shape == (64, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert load(tmp_path / "m.npz").n_classes == 3


@pytest.mark.parametrize("name", ["linear", "mlp_regression"])
def test_a_regressor_refuses_predict_proba_saying_it_is_a_regressor(tmp_path, name):
    # Prepare
    model, params, _ = _trained(name)
    save(tmp_path / "m.npz", model, params)
    released = load(tmp_path / "m.npz")

    # Execute / Assert
    with pytest.raises(TypeError, match="regressor"):
        released.predict_proba(X)
    assert released.n_classes == 0


def test_record_ids_and_metadata_round_trip(tmp_path):
    # Prepare
    model, params, _ = _trained("softmax")
    members = record_ids([0, 3, 3, 7], [40, 2, 9])
    heldout = np.arange(11, dtype=np.int32)
    meta = {"task": "air_quality", "seed": 7, "epsilon": float("inf"), "run": "fl",
            "metric": {"accuracy": 0.75}}

    # Execute
    save(tmp_path / "fl.npz", model, params, member_ids=members, heldout_ids=heldout, meta=meta)
    released = load(tmp_path / "fl.npz")

    # Assert
    np.testing.assert_array_equal(released.member_ids,
                                  [[40, 0], [40, 1], [40, 2], [9, 0], [9, 1], [9, 2], [9, 3]])
    np.testing.assert_array_equal(released.heldout_ids, np.arange(11))
    assert released.member_ids.dtype == released.heldout_ids.dtype == np.int64
    assert released.meta == meta
    assert "members=7" in repr(released) and "heldout=11" in repr(released)


def test_ids_left_out_are_absent_from_the_file_and_none_when_loaded(tmp_path):
    # Prepare / Execute
    _softmax_file(tmp_path / "m.npz")
    released = load(tmp_path / "m.npz")

    # Assert
    assert released.member_ids is None and released.heldout_ids is None and released.meta == {}
    assert sorted(_arrays(tmp_path / "m.npz")) == ["header", "meta", "params"]


def test_the_file_reads_with_numpy_alone_without_pickle(tmp_path):
    # Prepare
    model, params, _ = _trained("mlp_classification")
    save(tmp_path / "m.npz", model, params, member_ids=[[1, 2]], meta={"run": "fl_dp"})

    # Execute
    with np.load(tmp_path / "m.npz", allow_pickle=False) as f:
        header, meta = json.loads(str(f["header"])), json.loads(str(f["meta"]))
        stored, ids = f["params"], f["member_ids"]

    # Assert
    assert header == _header_of(model)
    assert header["kind"] == "MLP" and header["n_features"] == 5 and header["n_outputs"] == 3
    assert meta == {"run": "fl_dp"}
    np.testing.assert_array_equal(stored, params)
    np.testing.assert_array_equal(ids, [[1, 2]])


def test_a_diverged_model_loads_and_says_so_but_predicts_nothing(tmp_path):
    # Prepare
    model, params, _ = _trained("softmax")
    params = params.copy()
    params[3] = np.nan

    # Execute
    save(tmp_path / "central.npz", model, params)
    released = load(tmp_path / "central.npz")

    # Assert
    assert released.diverged and "diverged=True" in repr(released)
    assert np.isnan(released.params[3])
    for method in (released.predict, released.predict_proba, released.outputs):
        with pytest.raises(ValueError, match="diverged"):
            method(X)


def test_float64_params_are_stored_rounded_to_float32(tmp_path):
    # Prepare
    model = LinearRegression(n_features=1)
    params = np.array([1 / 3, 1e300])

    # Execute
    save(tmp_path / "m.npz", model, params)
    released = load(tmp_path / "m.npz")

    # Assert: 1e300 is beyond float32: the model is as good as diverged, and says so
    assert released.params[0] == np.float32(1 / 3)
    assert released.diverged


def test_a_released_model_can_be_built_in_memory_and_saved_again(tmp_path):
    # Prepare
    model, params, _ = _trained("mlp_regression")
    first = ReleasedModel(model, params, heldout_ids=[4, 5], meta={"run": "centralized"})

    # Execute
    save(tmp_path / "again.npz", first.model, first.params, heldout_ids=first.heldout_ids,
         meta=first.meta)
    second = load(tmp_path / "again.npz")

    # Assert
    np.testing.assert_array_equal(second.predict(X), first.predict(X))
    assert second.meta == first.meta and second.path == str(tmp_path / "again.npz")


# --- what save refuses ---------------------------------------------------------------------------


class _MySoftmax(SoftmaxRegression):
    """A subclass save must refuse: load could not rebuild it from the file's kind."""


@pytest.mark.parametrize("kwargs, words", [
    ({"model": _MySoftmax(n_features=2, n_classes=2)}, "model must be one of"),
    ({"params": np.zeros(5, np.float32)}, "n_params=6"),
    ({"params": np.zeros(6, np.int64)}, "float array"),
    ({"member_ids": np.zeros((3, 3), np.int64)}, "member_ids must be an int array"),
    ({"heldout_ids": [0.5, 1.5]}, "heldout_ids must be an int array"),
    ({"member_ids": [[1, -2]]}, "member_ids must hold ids in [0, 2**63)"),
    ({"meta": ["run"]}, "meta must be a dict"),
    ({"meta": {"when": object()}}, "meta must hold JSON values"),
])
def test_save_refuses_what_a_file_could_not_hold(tmp_path, kwargs, words):
    # Prepare
    args = {"model": SoftmaxRegression(n_features=2, n_classes=2),
            "params": np.zeros(6, np.float32)}
    args.update(kwargs)

    # Execute / Assert
    with pytest.raises(ValueError) as info:
        save(tmp_path / "m.npz", **args)
    assert words in str(info.value)
    assert not os.listdir(tmp_path)


# --- hostile and broken files --------------------------------------------------------------------

UNPICKLED: list[str] = []


def _record_unpickling() -> str:
    UNPICKLED.append("ran")
    return "payload"


class _Payload:
    """Unpickling it runs _record_unpickling: a stand-in for an attacker's code."""

    def __reduce__(self):
        return (_record_unpickling, ())


@pytest.mark.parametrize("key", ["params", "header", "member_ids"])
def test_a_pickled_object_array_is_refused_without_being_unpickled(tmp_path, key):
    # Prepare
    path = tmp_path / "m.npz"
    _softmax_file(path)
    _rewrite(path, **{key: np.array([_Payload()], dtype=object)})
    UNPICKLED.clear()

    # Execute
    error = _refused(path, "malformed", repr(key), "dtype object")

    # Assert
    assert UNPICKLED == []
    assert isinstance(error, ValueError) and isinstance(error, PrivcityError)


@pytest.mark.parametrize("cut", [0.25, 0.5, 0.9, 0.999])
def test_a_truncated_file_is_refused_as_not_an_npz(tmp_path, cut):
    # Prepare
    path = tmp_path / "m.npz"
    model, params, _ = _trained("mlp_classification")
    save(path, model, params, member_ids=record_ids([0, 50], [1]))
    blob = path.read_bytes()
    path.write_bytes(blob[:int(len(blob) * cut)])

    # Execute / Assert
    _refused(path, "not_npz", "cut short")


@pytest.mark.parametrize("content", [b"", b"just some text\n", b"\x93NUMPY\x01\x00" + b"0" * 80])
def test_a_file_that_is_no_zip_archive_is_refused(tmp_path, content):
    # Prepare
    path = tmp_path / "m.npz"
    path.write_bytes(content)

    # Execute / Assert
    _refused(path, "not_npz", "not an .npz")


def test_an_archive_holding_one_name_twice_is_refused(tmp_path):
    # Prepare: a second params.npy after the first (zipfile would read the last one)
    path = tmp_path / "m.npz"
    _softmax_file(path)
    buf = io.BytesIO()
    np.save(buf, np.full(6, 9.0, np.float32))
    with zipfile.ZipFile(path, "a") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr("params.npy", buf.getvalue())

    # Execute / Assert
    _refused(path, "malformed", "two members of the same name")


def test_a_flipped_byte_in_the_parameters_fails_the_archive_checksum(tmp_path):
    # Prepare
    path = tmp_path / "m.npz"
    _softmax_file(path)
    blob = bytearray(path.read_bytes())
    at = blob.index(np.float32(0.5).tobytes())  # params = [0, 0.1, ..., 0.5]
    blob[at] ^= 1
    path.write_bytes(bytes(blob))

    # Execute / Assert
    _refused(path, "malformed", "'params'", "CRC")


@pytest.mark.parametrize("key", ["header", "params", "meta"])
def test_a_file_missing_a_required_array_is_refused_naming_it(tmp_path, key):
    # Prepare
    path = tmp_path / "m.npz"
    _softmax_file(path)
    _rewrite(path, **{key: None})

    # Execute / Assert
    _refused(path, "missing_key", f"no array {key!r}")


@pytest.mark.parametrize("key, value, words", [
    ("params", np.zeros(6, np.float64), "must be float32"),
    ("params", np.zeros((2, 3), np.float32), "must be 1-D"),
    ("header", np.array([b"{}"]), "must be a string"),
    ("member_ids", np.zeros((2, 3), np.int64), "shape (n,) or (n, 2)"),
    ("heldout_ids", np.zeros(4, np.int32), "must be int64"),
    ("heldout_ids", np.array([3, -1]), "negative ids"),
    ("meta", np.array("[1, 2]"), "meta must be a JSON object"),
    ("meta", np.array("{'run': 'fl'}"), "meta is not valid JSON"),
    ("header", np.array("[" * 100_000 + "]" * 100_000), "header is not valid JSON"),
    ("header", np.array(" " * 300_000), "longer than"),
])
def test_an_array_of_the_wrong_form_is_refused_naming_it(tmp_path, key, value, words):
    # Prepare
    path = tmp_path / "m.npz"
    _softmax_file(path)
    _rewrite(path, **{key: value})

    # Execute / Assert
    _refused(path, "malformed", words)


@pytest.mark.parametrize("fields, kind, words", [
    ({"format": "sklearn"}, "unsupported_version", "'sklearn'"),
    ({"version": 2}, "unsupported_version", "version 2"),
    ({"version": True}, "unsupported_version", "version True"),
    ({"kind": "RandomForest"}, "unknown_kind", "'RandomForest'"),
    ({"kind": "Model"}, "unknown_kind", "'Model'"),
    ({"kind": ["MLP"]}, "unknown_kind", "['MLP']"),
    ({"config": {"n_features": 2, "n_classes": 2, "l2": 0.0, "__class__": "os.system"}},
     "inconsistent", "must hold exactly n_features, n_classes, l2"),
    ({"config": "n_features=2"}, "inconsistent", "got str"),
    ({"config": {"n_features": 2, "n_classes": 2.0, "l2": 0.0}}, "inconsistent",
     "n_classes must be an int >= 1"),
    ({"config": {"n_features": 1, "n_classes": 3, "l2": 0.0}}, "inconsistent",
     "has 6 parameters"),  # right count, wrong shape: the header's n_features says so
    ({"config": {"n_features": 2, "n_classes": 2, "l2": -1.0}}, "inconsistent",
     "l2 must be >= 0"),
    ({"config": {"n_features": 5, "n_classes": 1, "l2": 0.0}}, "inconsistent",
     "n_classes must be an int >= 2"),
    ({"task_type": "regression"}, "inconsistent", "header task_type"),
    ({"n_params": 7}, "inconsistent", "header n_params"),
])
def test_a_header_privcity_cannot_honour_is_refused(tmp_path, fields, kind, words):
    # Prepare
    path = tmp_path / "m.npz"
    _softmax_file(path)
    _with_header(path, **fields)

    # Execute
    error = _refused(path, kind)

    # Assert
    if words == "has 6 parameters":
        assert "header n_features is 2, the config gives 1" in str(error)
    else:
        assert words in str(error)


def test_parameters_of_the_wrong_length_for_the_config_are_refused(tmp_path):
    # Prepare
    path = tmp_path / "m.npz"
    _softmax_file(path)
    _rewrite(path, params=np.zeros(7, np.float32))

    # Execute / Assert
    _refused(path, "inconsistent", "has 6 parameters, the file stores 7")


@pytest.mark.parametrize("config", [
    {"n_features": 10**6, "hidden": 10**6, "n_outputs": 2, "task_type": "classification",
     "l2": 0.0, "activation": "relu"},
    {"n_features": 10**400, "hidden": 1, "n_outputs": 1, "task_type": "regression", "l2": 0.0,
     "activation": "tanh"},
])
def test_a_huge_config_is_refused_before_any_model_is_built(tmp_path, config):
    # Prepare: an MLP with 10^12 parameters claimed, 6 stored
    path = tmp_path / "m.npz"
    _softmax_file(path)
    _with_header(path, kind="MLP", config=config)

    # Execute
    tracemalloc.start()
    try:
        error = _refused(path, "inconsistent")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    # Assert
    assert "the file stores 6" in str(error) or "not valid JSON" in str(error)
    assert peak < 4 << 20


def _replace_member(path, name: str, header: bytes, body: bytes) -> None:
    """Rewrite the archive at path with member ``name`` replaced by a hand-made .npy (its
    header dict written verbatim)."""
    padded = header + b" " * ((-len(header) - 11) % 64) + b"\n"
    npy = b"\x93NUMPY\x01\x00" + len(padded).to_bytes(2, "little") + padded + body
    with zipfile.ZipFile(path) as zf:
        members = {info.filename: zf.read(info) for info in zf.infolist()}
    members[name] = npy
    with zipfile.ZipFile(path, "w") as zf:
        for member, content in members.items():
            zf.writestr(member, content)


@pytest.mark.parametrize("shape", ["(1000000000000,)", "(4611686018427387904,)", "(3, 2)"])
def test_an_npy_header_claiming_more_than_its_bytes_allocates_nothing(tmp_path, shape):
    # Prepare: 'params' declares a huge shape over 24 bytes of data
    path = tmp_path / "m.npz"
    _softmax_file(path)
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}".encode()
    _replace_member(path, "params.npy", header, b"\x00" * 24)

    # Execute
    tracemalloc.start()
    try:
        error = _refused(path, "malformed", "'params'")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    # Assert
    assert "the member holds 24" in str(error) or "must be 1-D" in str(error)
    assert peak < 4 << 20


def test_a_member_declaring_more_bytes_than_the_file_is_refused(tmp_path):
    # Prepare: params.npy's sizes in the central directory claim 1 GiB
    path = tmp_path / "m.npz"
    _softmax_file(path)
    blob = bytearray(path.read_bytes())
    at = blob.index(b"PK\x01\x02")
    while blob[at + 46:at + 46 + len(b"params.npy")] != b"params.npy":
        at = blob.index(b"PK\x01\x02", at + 4)
    blob[at + 20:at + 28] = (1 << 30).to_bytes(4, "little") * 2  # compressed, uncompressed
    path.write_bytes(bytes(blob))

    # Execute / Assert
    _refused(path, "malformed", "'params'", "declares 1073741824 bytes")


def test_a_compressed_archive_is_refused_as_a_possible_zip_bomb(tmp_path):
    # Prepare
    path = tmp_path / "m.npz"
    _softmax_file(path)
    np.savez_compressed(path, **_arrays(path))

    # Execute / Assert
    _refused(path, "malformed", "compressed members are not read")


def test_a_zip_bomb_is_refused_without_inflating_it(tmp_path):
    # Prepare: 'params' of 2^22 float32 zeros (16 MiB) deflated to a few KiB, and a config
    # that agrees with it
    path = tmp_path / "m.npz"
    model = LinearRegression(n_features=(1 << 22) - 1)
    header = _header_of(model)
    buf = io.BytesIO()
    np.save(buf, np.zeros(1 << 22, np.float32))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("params.npy", buf.getvalue())
        for key, text in (("header", json.dumps(header)), ("meta", "{}")):
            one = io.BytesIO()
            np.save(one, np.array(text))
            zf.writestr(key + ".npy", one.getvalue(), compress_type=zipfile.ZIP_STORED)
    del buf
    assert path.stat().st_size < 100_000

    # Execute
    tracemalloc.start()
    try:
        error = _refused(path, "malformed", "'params'")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    # Assert
    assert "16777344 bytes" in str(error) or "compressed members are not read" in str(error)
    assert peak < 4 << 20


def test_a_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "absent.npz")


# --- atomic writes -------------------------------------------------------------------------------


def test_a_write_that_fails_midway_leaves_the_old_file_whole(tmp_path, monkeypatch):
    # Prepare
    path = tmp_path / "fl.npz"
    _softmax_file(path, meta={"run": "old"})
    before = path.read_bytes()

    def crash_midway(f, *args, **kwargs):
        f.write(b"PK\x03\x04 half an archive")
        raise OSError("no space left on device")

    monkeypatch.setattr(np, "savez", crash_midway)

    # Execute
    with pytest.raises(OSError, match="no space"):
        _softmax_file(path, meta={"run": "new"})

    # Assert
    assert path.read_bytes() == before
    assert load(path).meta == {"run": "old"}
    assert os.listdir(tmp_path) == ["fl.npz"]  # no temp file left behind


def test_a_failed_rename_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    # Prepare
    path = tmp_path / "fl.npz"
    _softmax_file(path, meta={"run": "old"})

    def refuse(src, dst):
        raise PermissionError("read-only directory entry")

    monkeypatch.setattr(os, "replace", refuse)

    # Execute
    with pytest.raises(PermissionError):
        _softmax_file(path, meta={"run": "new"})
    monkeypatch.undo()

    # Assert
    assert load(path).meta == {"run": "old"}
    assert os.listdir(tmp_path) == ["fl.npz"]


def test_saving_through_a_symlink_replaces_its_target(tmp_path):
    # Prepare
    (tmp_path / "runs").mkdir()
    target = tmp_path / "runs" / "fl.npz"
    _softmax_file(target, meta={"run": "old"})
    link = tmp_path / "latest.npz"
    link.symlink_to(target)

    # Execute
    _softmax_file(link, meta={"run": "new"})

    # Assert
    assert link.is_symlink()
    assert load(target).meta == {"run": "new"}


def test_the_file_gets_the_mode_the_umask_allows(tmp_path):
    # Prepare
    old = os.umask(0o027)
    try:
        # Execute
        _softmax_file(tmp_path / "m.npz")
    finally:
        os.umask(old)

    # Assert
    assert stat.S_IMODE(os.stat(tmp_path / "m.npz").st_mode) == 0o640


# --- record ids ----------------------------------------------------------------------------------


def test_record_ids_name_every_row_of_a_city_and_record_rows_finds_them_again():
    # Prepare
    city = data.make_city("air_quality", n_devices=6, samples_per_device=4, seed=1)
    part = city.subset([4, 1, 5])

    # Execute
    ids = record_ids(part.offsets, part.device_ids)
    rows = record_rows(ids, city.offsets, city.device_ids)

    # Assert
    assert ids.shape == (12, 2) and ids.dtype == np.int64
    np.testing.assert_array_equal(ids[:, 0], np.repeat([4, 1, 5], 4))
    np.testing.assert_array_equal(ids[:, 1], np.tile(np.arange(4), 3))
    np.testing.assert_array_equal(city.X[rows], part.X)
    np.testing.assert_array_equal(city.y[rows], part.y)


def test_record_ids_of_a_test_set_name_its_pseudo_devices():
    # Prepare
    test = data.make_test_set("air_quality", n_devices=3, samples_per_device=2, seed=1)

    # Execute
    ids = record_ids(test.offsets, test.device_ids)

    # Assert
    np.testing.assert_array_equal(ids[:, 0], np.repeat(TEST_BASE + np.arange(3), 2))
    np.testing.assert_array_equal(record_rows(ids, test.offsets, test.device_ids), np.arange(6))


def test_record_ids_of_devices_without_rows_are_empty():
    ids = record_ids([0, 0, 0], [8, 9])
    assert ids.shape == (0, 2)
    assert record_rows(ids, [0, 0, 0], [8, 9]).shape == (0,)


@pytest.mark.parametrize("ids, words", [
    ([[3, 0]], "devices absent from device_ids, e.g. device 3"),
    ([[9, 2]], "row 2 of device 9, which holds 2 rows"),
    ([4, 1], "ids must be (n, 2)"),
])
def test_record_rows_refuses_ids_the_dataset_does_not_hold(ids, words):
    with pytest.raises(ValueError) as info:
        record_rows(ids, [0, 3, 5], [7, 9])
    assert words in str(info.value)


@pytest.mark.parametrize("offsets, devices, words", [
    ([0, 3], [7, 9], "offsets must be (n_devices + 1,) = (3,)"),
    ([0, 3, 2], [7, 9], "non-decreasing"),
    ([1, 3, 5], [7, 9], "from 0"),
    ([0, 3, 5], [7, 7], "device_ids must be distinct"),
])
def test_record_ids_refuse_a_layout_that_is_not_a_dataset(offsets, devices, words):
    with pytest.raises(ValueError) as info:
        record_ids(offsets, devices)
    assert words in str(info.value)


# --- the reader's arithmetic agrees with the models ----------------------------------------------


@pytest.mark.parametrize("model", [
    LinearRegression(n_features=9), SoftmaxRegression(n_features=4, n_classes=6),
    MLP(n_features=3, hidden=11, n_outputs=1, task_type="regression"),
    MLP(n_features=2, hidden=5, n_outputs=4, task_type="classification", activation="tanh"),
], ids=repr)
def test_the_reader_knows_each_kind_s_config_keys_and_parameter_count(model):
    kind = model_io._kind_of(model)
    assert tuple(model._config()) == model_io._CONFIG_KEYS[kind]
    assert model_io._n_params(kind, model._config()) == model.n_params
