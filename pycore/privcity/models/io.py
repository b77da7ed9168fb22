"""Released models on disk: one ``.npz`` file per model, readable with numpy alone, so that anyone
can attack a released model with their own tools; :func:`load` rebuilds it as a
:class:`ReleasedModel` (``predict``, ``predict_proba``, ``outputs``).

File format (``np.savez``: stored members, nothing pickled; strings are 0-d unicode arrays)
--------------------------------------------------------------------------------------------
``header``
    JSON object: ``format`` ("privcity.model"), ``version`` (1), ``kind`` ("LinearRegression",
    "SoftmaxRegression" or "MLP"), ``config`` (the constructor's keywords), ``task_type``,
    ``n_features``, ``n_outputs``, ``n_params``, ``privcity`` (the writer's version).
``params``
    float32 (n_params,): the flat parameter vector (layouts in linear.py and mlp.py). A model
    that diverged in training is stored as it is, NaN included.
``meta``
    JSON object chosen by the writer (task, seed, metric, epsilon, run ...); ``{}`` if none.
``member_ids``, ``heldout_ids`` (each present only when given)
    int64 ids of the training records and of held-out records (see below).

Record ids
----------
A record is named by ``(device id, row index within the device)``: int64 (n, 2), what
:func:`record_ids` gives for a :class:`~privcity.data.FederatedDataset` (the training city, or
a synthetic test set of pseudo-devices); :func:`record_rows` maps such ids back to rows of X.
A set without devices (a CSV's test split) is named by row index: int64 (n,). Both forms are
stored as given; ids are non-negative. (:mod:`.records` holds the two helpers.)

Reading with numpy alone::

    f = np.load("fl.npz", allow_pickle=False)
    header, params = json.loads(str(f["header"])), f["params"]
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import zipfile
from typing import Any

import numpy as np

from ..errors import ModelFileError
from .base import Model
from .linear import LinearRegression, SoftmaxRegression
from .mlp import MLP
from .records import check_ids as _check_ids

__all__ = ["FORMAT", "VERSION", "ReleasedModel", "load", "save"]

FORMAT = "privcity.model"
VERSION = 1
_KINDS: dict[str, type[Model]] = {
    "LinearRegression": LinearRegression, "SoftmaxRegression": SoftmaxRegression, "MLP": MLP}
# The constructor keywords of each kind (what its _config() returns), known before building one.
_CONFIG_KEYS = {
    "LinearRegression": ("n_features", "l2"),
    "SoftmaxRegression": ("n_features", "n_classes", "l2"),
    "MLP": ("n_features", "hidden", "n_outputs", "task_type", "l2", "activation"),
}
_TEXT_MAX_BYTES = 1 << 20  # header or meta: 4 bytes per character in a .npy unicode array
# key -> (dtype kind, itemsize, allowed ndims); header, params and meta are required.
_MEMBERS = {"header": ("U", None, (0,)), "params": ("f", 4, (1,)), "meta": ("U", None, (0,)),
            "member_ids": ("i", 8, (1, 2)), "heldout_ids": ("i", 8, (1, 2))}
_REQUIRED = ("header", "params", "meta")
_ID_KEYS = ("member_ids", "heldout_ids")


class ReleasedModel:
    """A model with its parameters, as released: what :func:`load` returns.

    Attributes
    ----------
    model : Model
        The rebuilt model (LinearRegression, SoftmaxRegression or MLP).
    params : numpy.ndarray
        float32 (n_params,).
    member_ids, heldout_ids : numpy.ndarray or None
        int64 (n, 2) ``(device id, row within the device)`` or (n,) row indices (module doc).
    meta : dict
        The writer's metadata.
    diverged : bool
        True when params hold NaN or Inf (training diverged): the model is kept, but the
        prediction methods raise ValueError.
    path : str or None
        The file it was loaded from.
    """

    def __init__(self, model: Model, params: Any, *, member_ids: Any = None,
                 heldout_ids: Any = None, meta: dict[str, Any] | None = None,
                 path: str | None = None) -> None:
        _kind_of(model)
        self.model = model
        self.params = _params_of(model, params)
        self.member_ids = None if member_ids is None else _check_ids(member_ids, "member_ids")
        self.heldout_ids = None if heldout_ids is None else _check_ids(heldout_ids, "heldout_ids")
        self.meta = {} if meta is None else _check_meta(meta)
        self.path = path
        self.diverged = not bool(np.isfinite(self.params).all())

    @property
    def task_type(self) -> str:
        """``"classification"`` or ``"regression"``."""
        return self.model.task_type

    @property
    def n_features(self) -> int:
        """Columns of X."""
        return self.model.n_features

    @property
    def n_classes(self) -> int:
        """Number of classes; 0 for a regressor."""
        return self.model.n_outputs if self.task_type == "classification" else 0

    def outputs(self, X: Any) -> np.ndarray:
        """float64 (n, n_outputs): logits (classification) or values (regression), as
        :meth:`Model.outputs` computes them from the released parameters."""
        self._require_finite()
        return self.model.outputs(self.params, X)

    def predict(self, X: Any) -> np.ndarray:
        """Class labels, int64 (n,), or regression values, float32 (n,).

        Values are bit-identical to ``model.predict(params, X)``; a label is the first maximum
        of the float64 logits (as ``model.score`` counts accuracy).
        """
        self._require_finite()
        if self.task_type == "regression":
            return self.model.predict(self.params, X)
        return np.argmax(self.model.outputs(self.params, X), axis=1).astype(np.int64)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, float32 (n, n_classes), rows summing to 1 up to rounding:
        ``model.predict(params, X)``. A regressor raises TypeError."""
        if self.task_type != "classification":
            raise TypeError(f"predict_proba: {self._name()} is a regressor (task_type "
                            "'regression'): it has no class probabilities; predict gives its "
                            "values")
        self._require_finite()
        return self.model.predict(self.params, X)

    def __repr__(self) -> str:
        def count(ids: np.ndarray | None) -> int | None:
            return None if ids is None else int(ids.shape[0])
        where = "" if self.path is None else f", path={self.path!r}"
        return (f"ReleasedModel({self.model!r}, members={count(self.member_ids)}, "
                f"heldout={count(self.heldout_ids)}, diverged={self.diverged}{where})")

    def _name(self) -> str:
        return f"the model in {self.path}" if self.path else f"the model {self.model!r}"

    def _require_finite(self) -> None:
        if self.diverged:
            raise ValueError(f"{self._name()} diverged in training (its parameters hold NaN or "
                             "Inf): it predicts nothing")


# --- writing -------------------------------------------------------------------------------------

def save(path: str | os.PathLike[str], model: Model, params: Any, *, member_ids: Any = None,
         heldout_ids: Any = None, meta: dict[str, Any] | None = None) -> None:
    """Write ``model`` with ``params`` (rounded to float32, NaN kept) to ``path`` exactly (no
    suffix added), atomically: a temp file in the same directory, fsync, ``os.replace``. A
    crash leaves the old file or the new one, never a part. Layout: module docstring.

    Raises ValueError for a model kind other than the three, params of another length, ids not
    int (n,) or (n, 2) >= 0, or meta that is not a JSON object.
    """
    kind = _kind_of(model)
    released = ReleasedModel(model, params, member_ids=member_ids, heldout_ids=heldout_ids,
                             meta=meta)
    header = {"format": FORMAT, "version": VERSION, "kind": kind, "config": model._config(),
              "task_type": model.task_type, "n_features": model.n_features,
              "n_outputs": model.n_outputs, "n_params": model.n_params,
              "privcity": _privcity_version()}
    arrays = {"header": np.array(json.dumps(header)), "params": released.params,
              "meta": np.array(json.dumps(released.meta))}
    for key in _ID_KEYS:
        ids = getattr(released, key)
        if ids is not None:
            arrays[key] = ids
    _atomic_savez(os.fspath(path), arrays)


def _atomic_savez(path: str, arrays: dict[str, np.ndarray]) -> None:
    # The real path: os.replace on a symlink would replace the link instead of its target.
    target = os.path.realpath(path)
    directory = os.path.dirname(target)
    fd, tmp = tempfile.mkstemp(prefix=".privcity-model-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, allow_pickle=False, **arrays)
            f.flush()
            os.fsync(f.fileno())
            # mkstemp makes the file 0600; a release gets the mode np.savez would have given it.
            os.fchmod(f.fileno(), 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # some platforms cannot open a directory
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _umask() -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/self/status", encoding="ascii") as f:  # Linux: read without setting
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    # Elsewhere: set and restore (another thread meanwhile creates files private, not open).
    old = os.umask(0o077)
    os.umask(old)
    return old


def _privcity_version() -> str:
    from .. import __version__
    return __version__


# --- reading -------------------------------------------------------------------------------------

def load(path: str | os.PathLike[str]) -> ReleasedModel:
    """Read a file written by :func:`save` and rebuild its model.

    Nothing is unpickled and no array larger than the file is allocated: every member is
    checked (dtype, shape, size against the bytes present) before it is read, and the config
    must give exactly the stored number of parameters before a model is built. A diverged
    model loads with ``diverged=True``.

    Raises
    ------
    ModelFileError
        (a ValueError) naming the file and what is wrong; ``kind`` says which check failed.
    OSError
        The file cannot be opened.
    """
    name = os.fspath(path)
    arrays = _read_npz(name)
    header = _json_object(arrays["header"], "header", name)
    _check_format(header, name)
    model = _rebuild(header, arrays["params"], name)
    meta = _json_object(arrays["meta"], "meta", name)
    for key in _ID_KEYS:
        ids = arrays.get(key)
        if ids is not None and ids.size and ids.min() < 0:
            raise ModelFileError(f"{name}: {key} holds negative ids", kind="malformed")
    return ReleasedModel(model, arrays["params"], member_ids=arrays.get("member_ids"),
                         heldout_ids=arrays.get("heldout_ids"), meta=meta, path=name)


def _read_npz(name: str) -> dict[str, Any]:
    """The known members of the archive, checked and read (unknown members are not read)."""
    size = os.path.getsize(name)
    try:
        zf = zipfile.ZipFile(name)
    except (zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise ModelFileError(f"{name}: not an .npz file (a zip archive of .npy arrays) or cut "
                             f"short: {exc}", kind="not_npz") from None
    with zf:
        infos = zf.infolist()
        names = [info.filename for info in infos]
        if len(set(names)) != len(names):
            raise ModelFileError(f"{name}: the archive holds two members of the same name",
                                 kind="malformed")
        by_name = dict(zip(names, infos))
        out: dict[str, Any] = {}
        for key in _MEMBERS:
            info = by_name.get(key + ".npy")
            if info is None:
                if key in _REQUIRED:
                    raise ModelFileError(f"{name}: no array {key!r} (a privcity model file "
                                         f"holds {', '.join(_REQUIRED)})", kind="missing_key")
                continue
            try:
                out[key] = _read_member(zf, info, key, size)
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
                raise ModelFileError(f"{name}: array {key!r} refused: {exc}",
                                     kind="malformed") from None
    return out


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, file_size: int) -> Any:
    """One .npy member, its header checked before any data is read; a string for text."""
    # Stored members only: their bytes lie in the file, so no declared size can exceed it
    # (a compressed member could inflate far past the file: a zip bomb).
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError("compressed members are not read (np.savez stores them uncompressed)")
    if info.file_size > file_size:
        raise ValueError(f"declares {info.file_size} bytes, more than the file's {file_size}")
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f".npy version {version} is not read (1.0 and 2.0 are)")
        nbytes = info.file_size - f.tell()
        _check_member(key, shape, fortran, dtype, nbytes)
        data = f.read(nbytes)
    if len(data) != nbytes:
        raise ValueError(f"cut short: {len(data)} of {nbytes} bytes")
    arr = np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
    return str(arr[()]) if dtype.kind == "U" else arr


def _check_member(key: str, shape: tuple[int, ...], fortran: bool, dtype: np.dtype,
                  nbytes: int) -> None:
    kind, itemsize, ndims = _MEMBERS[key]
    expected = {"U": "a string", "f": "float32", "i": "int64"}[kind]
    if dtype.kind != kind or (itemsize is not None and dtype.itemsize != itemsize) \
            or dtype.hasobject:
        raise ValueError(f"must be {expected}, got dtype {dtype}")
    if len(shape) not in ndims or (len(shape) == 2 and shape[1] != 2):
        forms = {(0,): "a 0-d array", (1,): "1-D", (1, 2): "of shape (n,) or (n, 2)"}[ndims]
        raise ValueError(f"must be {forms}, got shape {shape}")
    if fortran and len(shape) > 1:
        raise ValueError("Fortran-ordered arrays are not read")
    if math.prod(shape) * dtype.itemsize != nbytes:
        raise ValueError(f"shape {shape} of {dtype} needs {math.prod(shape) * dtype.itemsize} "
                         f"bytes, the member holds {nbytes}")
    if kind == "U" and nbytes > _TEXT_MAX_BYTES:
        raise ValueError(f"longer than {_TEXT_MAX_BYTES} bytes")


def _json_object(text: str, key: str, name: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ModelFileError(f"{name}: {key} is not valid JSON: {exc}", kind="malformed") from None
    if not isinstance(value, dict):
        raise ModelFileError(f"{name}: {key} must be a JSON object, got {type(value).__name__}",
                             kind="malformed")
    return value


def _check_format(header: dict[str, Any], name: str) -> None:
    fmt, version = header.get("format"), header.get("version")
    if fmt != FORMAT:
        raise ModelFileError(f"{name}: header format is {fmt!r}, not {FORMAT!r}",
                             kind="unsupported_version")
    if isinstance(version, bool) or not isinstance(version, int) or version != VERSION:
        raise ModelFileError(f"{name}: format version {version!r}; this privcity reads version "
                             f"{VERSION} (a newer privcity may read it)",
                             kind="unsupported_version")


def _rebuild(header: dict[str, Any], params: np.ndarray, name: str) -> Model:
    """The model of the header, once its config is known to give exactly len(params)
    parameters (so a crafted config cannot make the constructor allocate more than the file)."""
    kind, config = header.get("kind"), header.get("config")
    if not isinstance(kind, str) or kind not in _KINDS:
        raise ModelFileError(f"{name}: unknown model kind {kind!r}; privcity reads "
                             f"{', '.join(_KINDS)}", kind="unknown_kind")
    if not isinstance(config, dict) or set(config) != set(_CONFIG_KEYS[kind]):
        got = sorted(config) if isinstance(config, dict) else type(config).__name__
        raise ModelFileError(f"{name}: the config of a {kind} must hold exactly "
                             f"{', '.join(_CONFIG_KEYS[kind])}; got {got}", kind="inconsistent")
    try:
        n_params = _n_params(kind, config)
    except ValueError as exc:
        raise ModelFileError(f"{name}: config {exc}", kind="inconsistent") from None
    if n_params != params.shape[0]:
        raise ModelFileError(f"{name}: a {kind} of config {config} has {n_params} parameters, "
                             f"the file stores {params.shape[0]}", kind="inconsistent")
    try:
        model = _KINDS[kind](**config)
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"{name}: the config is refused: {exc}", kind="inconsistent") from None
    for field in ("task_type", "n_features", "n_outputs", "n_params"):
        if header.get(field) != getattr(model, field):
            raise ModelFileError(f"{name}: header {field} is {header.get(field)!r}, the config "
                                 f"gives {getattr(model, field)!r}", kind="inconsistent")
    return model


def _n_params(kind: str, config: dict[str, Any]) -> int:
    """The parameter count of a config, by arithmetic (nothing allocated); the layouts of
    linear.py and mlp.py."""
    def size(key: str) -> int:
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be an int >= 1, got {value!r}")
        return value

    n_features = size("n_features")
    if kind == "LinearRegression":
        return n_features + 1
    if kind == "SoftmaxRegression":
        return (n_features + 1) * size("n_classes")
    hidden = size("hidden")
    return (n_features + 1) * hidden + (hidden + 1) * size("n_outputs")


# --- checks shared by writing and reading -------------------------------------------------------

def _kind_of(model: Any) -> str:
    """The file's name of the model's class; exact classes only (a subclass may compute
    something its file could not say)."""
    for kind, cls in _KINDS.items():
        if type(model) is cls:
            return kind
    raise ValueError(f"model must be one of {', '.join(_KINDS)}, got {type(model).__name__}")


def _params_of(model: Model, params: Any) -> np.ndarray:
    """params as float32 (n_params,); NaN and Inf kept (a diverged model is released as is)."""
    p = np.asarray(params)
    if p.ndim != 1 or p.shape[0] != model.n_params:
        raise ValueError(f"params must be a 1-D array of n_params={model.n_params} floats, got "
                         f"shape {p.shape}")
    if p.dtype.kind != "f":
        raise ValueError(f"params must be a float array, got dtype {p.dtype}")
    with np.errstate(over="ignore"):
        return np.array(p, dtype=np.float32)


def _check_meta(meta: Any) -> dict[str, Any]:
    """meta as a dict that survives a JSON round trip (keys str)."""
    if not isinstance(meta, dict) or not all(isinstance(k, str) for k in meta):
        raise ValueError(f"meta must be a dict with str keys, got {type(meta).__name__}")
    try:
        return json.loads(json.dumps(meta))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"meta must hold JSON values only: {exc}") from None
