"""Location privacy: generalisation to grids and geohashes, time coarsening, spatial k-cloaking
(Gruteser and Grunwald 2003) and geo-indistinguishability (Andres et al. 2013).

Coordinates are WGS84 degrees on numpy arrays (any shape; lat and lon of the same shape),
distances are metres. Metric grids use an equirectangular projection on a sphere of radius
:data:`EARTH_RADIUS_M` about one reference latitude (``x = R lon cos(ref_lat)``, ``y = R lat``):
cells are squares of the given side at the reference latitude, and their east-west side scales
by ``cos(lat) / cos(ref_lat)`` away from it (2% narrower 100 km north of 50 degrees N), so one
grid serves one city, not the globe. Geohashes are the standard base32 geohash (lon bit first; a value on a
cell edge belongs to the upper cell).

Usage::

    cells = grid_generalize(lat, lon, 500.0)             # cells.lat, cells.lon, cells.cell
    gh = geohash_encode(lat, lon, 7)                      # array of 7-character str
    cloak = spatial_cloak(lat, lon, k=10)                 # per-point quadtree cell with >= 10
    noisy_lat, noisy_lon = geo_indistinguishable(lat, lon, np.log(4) / 200)
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ..noise import SecureRNG
from ._geo import U, compact, geohash_codes, latlon, positive_arg, precision_arg, spread

__all__ = [
    "EARTH_RADIUS_M", "Cloak", "GeohashBox", "Generalized", "coarsen_time", "geo_indistinguishable",
    "geohash_decode", "geohash_encode", "geohash_generalize", "grid_generalize", "lambertw_m1",
    "spatial_cloak",
]

#: Mean Earth radius (IUGG), metres: the sphere of every metric conversion here.
EARTH_RADIUS_M = 6_371_008.8
_M_PER_DEG = EARTH_RADIUS_M * math.pi / 180.0
_BASE32 = np.frombuffer(b"0123456789bcdefghjkmnpqrstuvwxyz", np.uint8)
_DECODE = np.full(256, -1, np.int64)
_DECODE[_BASE32] = np.arange(32)
_DECODE[np.frombuffer(b"BCDEFGHJKMNPQRSTUVWXYZ", np.uint8)] = \
    _DECODE[np.frombuffer(b"bcdefghjkmnpqrstuvwxyz", np.uint8)]   # upper case accepted


class Generalized(NamedTuple):
    """Generalised points: the centre of each point's cell and the cell's identifier."""

    lat: np.ndarray
    lon: np.ndarray
    cell: np.ndarray


class GeohashBox(NamedTuple):
    """Decoded geohashes: cell centres and half-widths (the largest error), degrees."""

    lat: np.ndarray
    lon: np.ndarray
    lat_err: np.ndarray
    lon_err: np.ndarray


class Cloak(NamedTuple):
    """Per-point cloaking regions of :func:`spatial_cloak` (NaN bounds where suppressed)."""

    lat_min: np.ndarray
    lat_max: np.ndarray
    lon_min: np.ndarray
    lon_max: np.ndarray
    count: np.ndarray        # points of the snapshot inside the region (0 where suppressed)
    cell_m: np.ndarray       # side of the region, metres (NaN where suppressed)
    suppressed: np.ndarray   # True: no region of at most max_cell_m holds k points


def _scalar_or(a: np.ndarray) -> Any:
    return a[()] if a.ndim == 0 else a


# --- geohash cells (the bits: _geo.geohash_codes) -------------------------------------------------

def _geohash_boxes(codes: np.ndarray, precision: int) -> GeohashBox:
    nbits = 5 * precision
    lon_bits, lat_bits = (nbits + 1) // 2, nbits // 2
    if nbits % 2 == 0:
        ilon, ilat = compact(codes >> U(1)), compact(codes)
    else:
        ilon, ilat = compact(codes), compact(codes >> U(1))
    wlat, wlon = 180.0 / (1 << lat_bits), 360.0 / (1 << lon_bits)
    lat = -90.0 + (ilat.astype(np.float64) + 0.5) * wlat
    lon = -180.0 + (ilon.astype(np.float64) + 0.5) * wlon
    return GeohashBox(lat, lon, np.full(lat.shape, wlat / 2), np.full(lon.shape, wlon / 2))


def _codes_to_str(codes: np.ndarray, precision: int) -> np.ndarray:
    shifts = (5 * np.arange(precision - 1, -1, -1)).astype(U)
    digits = (codes.reshape(-1, 1) >> shifts) & U(31)
    chars = np.ascontiguousarray(_BASE32[digits.astype(np.intp)])
    return chars.view(f"S{precision}").reshape(codes.shape).astype(f"U{precision}")


# --- geohash --------------------------------------------------------------------------------------

def geohash_encode(lat: Any, lon: Any, precision: int) -> Any:
    """Standard base32 geohashes of ``precision`` characters (1..12).

    Returns an array of str of lat's shape (a ``numpy.str_`` for scalar input).
    Cell size at precision 5 / 7 / 9: about 4.9 km x 4.9 km / 153 m x 153 m / 4.8 m x 4.8 m
    (the east-west side shrinks with cos(lat)).
    """
    p = precision_arg(precision)
    la, lo = latlon(lat, lon)
    return _scalar_or(_codes_to_str(geohash_codes(la, lo, p), p))


def geohash_decode(hashes: Any) -> GeohashBox:
    """Centres and half-widths (degrees) of geohash cells; hashes may differ in length (1..12).

    Upper-case letters are accepted; any other character outside the geohash alphabet
    (a, i, l, o, ...) raises ValueError.
    """
    arr = np.asarray(hashes)
    if arr.dtype.kind == "O":
        if not all(isinstance(h, (str, bytes)) for h in arr.reshape(-1)):
            raise ValueError("hashes must be strings")
        arr = arr.astype(str)
    if arr.dtype.kind not in "US":
        raise ValueError(f"hashes must be strings, got dtype {arr.dtype}")
    try:
        raw = arr.astype("S") if arr.dtype.kind == "U" else arr
    except UnicodeEncodeError:
        raise ValueError("hashes contain characters outside the geohash alphabet") from None
    flat = raw.reshape(-1)
    width = max(raw.dtype.itemsize, 1)
    chars = np.frombuffer(np.ascontiguousarray(flat).tobytes(), np.uint8).reshape(flat.size, width) \
        if flat.size else np.zeros((0, width), np.uint8)
    lengths = (chars != 0).sum(axis=1)
    if flat.size and (lengths.min() < 1 or lengths.max() > 12):
        raise ValueError("hashes must have 1 to 12 characters")
    vals = _DECODE[chars]
    present = np.arange(width) < lengths[:, None]
    if (vals[present] < 0).any():
        raise ValueError("hashes contain characters outside the geohash alphabet")
    out = [np.empty(flat.size, np.float64) for _ in range(4)]
    for p in np.unique(lengths):
        rows = lengths == p
        codes = np.zeros(rows.sum(), U)
        for i in range(p):
            codes = (codes << U(5)) | vals[rows, i].astype(U)
        box = _geohash_boxes(codes, int(p))
        for o, b in zip(out, box):
            o[rows] = b
    return GeohashBox(*(_scalar_or(o.reshape(arr.shape)) for o in out))


def geohash_generalize(lat: Any, lon: Any, precision: int) -> Generalized:
    """Each point replaced by the centre of its geohash cell; ``cell`` holds the geohashes."""
    p = precision_arg(precision)
    la, lo = latlon(lat, lon)
    codes = geohash_codes(la, lo, p)
    box = _geohash_boxes(codes, p)
    return Generalized(_scalar_or(box.lat), _scalar_or(box.lon), _scalar_or(_codes_to_str(codes, p)))


# --- metric grid ----------------------------------------------------------------------------------

def _ref_lat(la: np.ndarray, ref_lat: Any) -> float:
    if ref_lat is None:
        # A whole degree: batches of one city (devices, days) share the same grid, and the grid
        # reveals only the data's latitude to the degree.
        phi = float(np.round(la.mean())) if la.size else 0.0
    else:
        try:
            phi = float(ref_lat)
        except (TypeError, ValueError):
            raise ValueError(f"ref_lat must be a latitude in degrees, got {ref_lat!r}") from None
    if not abs(phi) <= 85.0:
        raise ValueError(f"ref_lat must be in [-85, 85] degrees (equirectangular grid), got {phi!r}")
    return phi


def grid_generalize(lat: Any, lon: Any, cell_m: float, *, ref_lat: float | None = None) -> Generalized:
    """Each point replaced by the centre of its cell in a square metric grid of side ``cell_m``.

    Parameters
    ----------
    lat, lon : array_like
        Degrees, same shape.
    cell_m : float
        Cell side in metres (>= 0.01).
    ref_lat : float, optional
        Latitude (degrees) at which cells are exactly ``cell_m`` wide. Default: the data's mean
        latitude rounded to a whole degree, so batches of one city share a grid; pass it
        explicitly to be sure (e.g. the city centre's latitude).

    Returns
    -------
    Generalized
        ``lat``, ``lon``: the cell centres; ``cell``: int64 cell ids
        (``row * 2**32 + column + 2**31`` in the grid anchored at lat = lon = 0).
    """
    cell = positive_arg(cell_m, "cell_m")
    if cell < 0.01:
        raise ValueError(f"cell_m must be >= 0.01 m, got {cell_m!r}")
    la, lo = latlon(lat, lon)
    kx = _M_PER_DEG * math.cos(math.radians(_ref_lat(la, ref_lat)))
    iy = np.floor(la * (_M_PER_DEG / cell)).astype(np.int64)
    ix = np.floor(lo * (kx / cell)).astype(np.int64)
    clat = np.clip((iy + 0.5) * (cell / _M_PER_DEG), -90.0, 90.0)
    clon = np.clip((ix + 0.5) * (cell / kx), -180.0, 180.0)
    ids = iy * (1 << 32) + (ix + (1 << 31))
    return Generalized(_scalar_or(clat), _scalar_or(clon), _scalar_or(ids))


# --- time -----------------------------------------------------------------------------------------

def coarsen_time(timestamps: Any, seconds: float, *, origin: Any = 0) -> Any:
    """Timestamps floored to multiples of ``seconds`` counted from ``origin``.

    Integer timestamps (Unix seconds) stay integers (``seconds`` must then be a whole number);
    float timestamps are floored as floats; ``datetime64`` arrays keep their unit (``origin`` is
    then a ``datetime64`` or 0 for the Unix epoch). Negative timestamps floor downwards too.
    """
    s = positive_arg(seconds, "seconds")
    t = np.asarray(timestamps)
    if t.dtype.kind == "M":
        unit, _ = np.datetime_data(t.dtype)
        per_s = np.timedelta64(1, "s") / np.timedelta64(1, unit)   # units per second
        step = s * per_s
        if step != int(step):
            raise ValueError(f"seconds must be a whole number of {unit} for this datetime64 array")
        o = np.datetime64(0, unit) if isinstance(origin, (int, np.integer)) and origin == 0 \
            else np.datetime64(origin, unit)
        ti = (t - o).astype(np.int64)
        out = (ti // int(step)) * int(step)
        return _scalar_or(np.where(np.isnat(t), t, o + out.astype(f"timedelta64[{unit}]")))
    if t.dtype.kind in "iu":
        if s != int(s):
            raise ValueError(f"seconds must be a whole number for integer timestamps, got {seconds!r}")
        step, o = int(s), int(origin)
        ti = t.astype(np.int64)
        return _scalar_or((ti - o) // step * step + o)
    if t.dtype.kind == "f":
        if np.isnan(t).any():
            raise ValueError("timestamps contains NaN")
        o = float(origin)
        return _scalar_or(np.floor((t - o) / s) * s + o)
    raise ValueError(f"timestamps must be integers, floats or datetime64, got dtype {t.dtype}")


# --- spatial k-cloaking ---------------------------------------------------------------------------

def _cell_index(v: np.ndarray, lo: float, width: float, cells: int) -> np.ndarray:
    """i with lo + i * width <= v < lo + (i + 1) * width as evaluated in floats (the quotient
    alone can be one off), clipped to the grid."""
    i = np.clip(np.floor((v - lo) / width), 0, cells - 1).astype(np.int64)
    i -= (v < lo + i * width) & (i > 0)
    i += (v >= lo + (i + 1) * width) & (i < cells - 1)
    return i


def spatial_cloak(lat: Any, lon: Any, k: int, *, min_cell_m: float = 1.0,
                  max_cell_m: float | None = None,
                  area: tuple[float, float, float, float] | None = None) -> Cloak:
    """Spatial k-cloaking (Gruteser and Grunwald 2003): each point's smallest quadtree cell that
    holds at least k points of the snapshot (the point itself included).

    The quadtree's root is the square (in metres, equirectangular about the root's mid-latitude)
    that starts at the south-west corner of ``area`` -- by default the snapshot's bounding box --
    and covers it. A point whose cell would be larger than ``max_cell_m`` (or which shares even
    the root with fewer than k - 1 others) is suppressed: its bounds are NaN, ``count`` 0 and
    ``suppressed`` True; the caller drops it. Cells never get smaller than ``min_cell_m``.

    Parameters
    ----------
    lat, lon : array_like
        One snapshot of positions (degrees, same shape).
    k : int
        Anonymity level, >= 2.
    min_cell_m : float
        Smallest cell side, metres (the quadtree stops subdividing there).
    max_cell_m : float, optional
        Largest acceptable cell side, metres (default: no limit).
    area : (lat_min, lat_max, lon_min, lon_max), optional
        A fixed area instead of the data's bounding box (every point must lie inside): the
        quadtree is then independent of the snapshot's extent.

    Returns
    -------
    Cloak
        Per point: region bounds in degrees, points inside, side in metres, suppressed flag.

    Notes
    -----
    As in the paper, each point gets the cell chosen from its own position; a region released
    for one point may hold points that were given smaller cells, so an attacker who knows the
    algorithm and the other points can sometimes narrow a region down (no reciprocity, cf.
    Kalnis et al. 2007). Time: one sort of the points' Morton codes, then O(n) per level.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"k must be an int >= 2, got {k!r}")
    min_m = positive_arg(min_cell_m, "min_cell_m")
    max_m = math.inf if max_cell_m is None else positive_arg(max_cell_m, "max_cell_m")
    la, lo = latlon(lat, lon)
    shape = la.shape
    la, lo = la.reshape(-1), lo.reshape(-1)
    n = la.size
    if area is None:
        box = (la.min(), la.max(), lo.min(), lo.max()) if n else (0.0, 0.0, 0.0, 0.0)
    else:
        try:
            box = tuple(float(v) for v in area)
        except (TypeError, ValueError):
            raise ValueError("area must be (lat_min, lat_max, lon_min, lon_max) in degrees") from None
        if len(box) != 4 or not (-90 <= box[0] <= box[1] <= 90 and -180 <= box[2] <= box[3] <= 180):
            raise ValueError("area must be (lat_min, lat_max, lon_min, lon_max) in degrees, "
                             "min <= max")
        if n and ((la < box[0]) | (la > box[1]) | (lo < box[2]) | (lo > box[3])).any():
            raise ValueError("every point must lie inside area")
    phi = float(np.clip((box[0] + box[1]) / 2, -85.0, 85.0))
    kx = _M_PER_DEG * math.cos(math.radians(phi))
    # Square in metres, a hair larger than the box so that its far edges hold the extreme points.
    side = max((box[3] - box[2]) * kx, (box[1] - box[0]) * _M_PER_DEG, min_m) * (1 + 2**-20)
    top = min(int(math.floor(math.log2(side / min_m))), 31)   # finest level; 62 Morton bits
    cells = 1 << top
    wlat, wlon = side / _M_PER_DEG / cells, side / kx / cells   # finest cell, degrees
    iy = _cell_index(la, box[0], wlat, cells)
    ix = _cell_index(lo, box[2], wlon, cells)
    morton = spread(ix) | (spread(iy) << U(1))
    order = np.argsort(morton, kind="stable")
    ms = morton[order]
    level = np.full(n, -1, np.int64)
    count = np.zeros(n, np.int64)
    new = np.empty(n, bool)
    # Cells are nested, so a point's count can only fall from one level to the next: the first
    # level at which nobody reaches k ends the descent. A coarser cell's Morton code is a prefix
    # of the finer one's, so one sort serves every level.
    for lev in range(top + 1):
        key = ms >> U(2 * (top - lev))
        if n:
            new[0] = True
            np.not_equal(key[1:], key[:-1], out=new[1:])
        starts = np.flatnonzero(new)
        sizes = np.diff(np.append(starts, n))
        per = np.repeat(sizes, sizes)
        ok = per >= k
        if not ok.any():
            break
        level[ok] = lev
        count[ok] = per[ok]
    lvl, cnt = np.empty(n, np.int64), np.empty(n, np.int64)
    lvl[order], cnt[order] = level, count

    cell_side = side / np.exp2(np.maximum(lvl, 0))
    suppressed = (lvl < 0) | (cell_side > max_m)
    shift = top - np.maximum(lvl, 0)
    # Bounds as lo + (index of the cell's first finest cell) * finest width: the same float
    # expression that placed each point, so a point is never outside its bounds by rounding.
    jy, jx = (iy >> shift) << shift, (ix >> shift) << shift
    span = np.int64(1) << shift
    lat_min, lat_max = box[0] + jy * wlat, box[0] + (jy + span) * wlat
    lon_min, lon_max = box[2] + jx * wlon, box[2] + (jx + span) * wlon
    nan = np.float64(np.nan)
    outs = [np.where(suppressed, nan, v) for v in (lat_min, lat_max, lon_min, lon_max)]
    return Cloak(*(o.reshape(shape) for o in outs), np.where(suppressed, 0, cnt).reshape(shape),
                 np.where(suppressed, nan, cell_side).reshape(shape), suppressed.reshape(shape))


# --- geo-indistinguishability ---------------------------------------------------------------------

# Series of W about the branch point in s = -sqrt(2 (1 + e z)) (Corless et al. 1996); the -1
# branch takes the negative root.
_BRANCH_SERIES = (-1.0, 1.0, -1.0 / 3.0, 11.0 / 72.0, -43.0 / 540.0, 769.0 / 17280.0,
                  -221.0 / 8505.0, 680863.0 / 43545600.0, -1963.0 / 204120.0,
                  226287557.0 / 37623398400.0)
_NEAR_BRANCH = 1e-3


def _lambertw_m1(q: np.ndarray, logz: np.ndarray) -> np.ndarray:
    """W_{-1}(z) given q = 1 + e z (the distance to the branch point, which the planar Laplace
    draws directly) and ln(-z) (exact far from the branch point, where q rounds to 1)."""
    s = -np.sqrt(2.0 * q)
    series = np.zeros_like(s)
    for c in reversed(_BRANCH_SERIES):
        series = series * s + c
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        far = q >= 0.5
        l2 = np.log(-logz)
        w = np.where(far, logz - l2 + l2 / logz, series)
        # Halley on h(w) = w + ln(-w) - ln(-z), which stays well scaled for z down to 1e-308
        # (w e^w underflows long before). Near the branch point (h' -> 0) the series is exact.
        iterate = q >= _NEAR_BRANCH
        for _ in range(6):
            h = w + np.log(-w) - logz
            d1 = 1.0 + 1.0 / w
            step = 2.0 * h * d1 / (2.0 * d1 * d1 + h / (w * w))
            w = np.where(iterate, w - step, w)
        w = np.where(np.isneginf(logz), -np.inf, w)
    return w


def lambertw_m1(z: Any) -> Any:
    """The -1 branch of the Lambert W function, W_{-1}(z) for z in [-1/e, 0] (-inf at 0).

    Vectorised numpy: Halley iterations on ``w + ln(-w) = ln(-z)``, and the branch-point
    series where 1 + e z < 1e-3. Agrees with ``scipy.special.lambertw(z, -1)`` to 1e-13
    (relative) from 1e-5 above -1/e down to z = -1e-300; closer to -1/e, where scipy loses
    digits, it satisfies w e^w = z to rounding.
    """
    zz = np.asarray(z, dtype=np.float64)
    if np.isnan(zz).any() or (zz > 0).any() or (zz < -1.0 / math.e - 1e-15).any():
        raise ValueError("z must be in [-1/e, 0]")
    q = np.clip(1.0 + math.e * zz, 0.0, 1.0)
    with np.errstate(divide="ignore"):
        logz = np.log(-zz)
    return _scalar_or(_lambertw_m1(q, logz))


def geo_indistinguishable(lat: Any, lon: Any, epsilon: float, *,
                          rng: SecureRNG | None = None) -> tuple[Any, Any]:
    """Each point moved by planar Laplace noise (geo-indistinguishability, Andres et al. 2013).

    Parameters
    ----------
    lat, lon : array_like
        Degrees, same shape.
    epsilon : float
        Privacy level per metre (1/m): two places r metres apart are epsilon * r
        indistinguishable. Example: ``math.log(4) / 200`` gives ln(4)-privacy within 200 m;
        the mean displacement is 2 / epsilon (about 289 m there).
    rng : SecureRNG, optional
        The noise source (default: a fresh OS-keyed :class:`privcity.noise.SecureRNG`). A
        seeded one is for simulations only.

    Returns
    -------
    (lat, lon)
        The noisy points, degrees, float64: each moved along the great circle of heading
        theta (counter-clockwise from east) by r, on the sphere of :data:`EARTH_RADIUS_M`, so
        any distance (across a pole, or around the globe for a tiny epsilon) lands on the
        globe; longitudes wrap to [-180, 180).

    Notes
    -----
    Angle uniform in [0, 2 pi); radius r = -(W_{-1}((p - 1) / e) + 1) / epsilon with p uniform in
    [0, 1), the inverse of the radial CDF C(r) = 1 - (1 + epsilon r) e^{-epsilon r}.

    Float output, like ``perturb`` in :mod:`privcity.dp`: fit for simulations. The release
    path's protection against floating-point attacks (integer noise on a data-independent grid)
    is not provided here; Andres et al. analyse snapping the output to a grid, which costs
    some epsilon.
    """
    eps = positive_arg(epsilon, "epsilon")
    la, lo = latlon(lat, lon)
    gen = SecureRNG() if rng is None else rng
    if not isinstance(gen, SecureRNG):
        raise ValueError("rng must be a privcity.noise.SecureRNG")
    n = la.size
    u = gen.uniform(2 * n)
    theta = 2.0 * math.pi * u[:n]
    p = u[n:]
    r = -(_lambertw_m1(p, np.log1p(-p) - 1.0) + 1.0) / eps
    r = r.reshape(la.shape)
    theta = theta.reshape(la.shape)
    # The point at great-circle distance r from (la, lo), heading theta counter-clockwise from
    # east (bearing pi/2 - theta from north): exact on the sphere for any r, poles included.
    delta = r / EARTH_RADIUS_M
    phi, lam = np.radians(la), np.radians(lo)
    sin_phi, cos_phi = np.sin(phi), np.cos(phi)
    sin_d, cos_d = np.sin(delta), np.cos(delta)
    sin_lat2 = np.clip(sin_phi * cos_d + cos_phi * sin_d * np.sin(theta), -1.0, 1.0)
    new_lat = np.degrees(np.arcsin(sin_lat2))
    new_lon = np.degrees(lam + np.arctan2(np.cos(theta) * sin_d * cos_phi,
                                          cos_d - sin_phi * sin_lat2))
    new_lon = (new_lon + 180.0) % 360.0 - 180.0
    return _scalar_or(new_lat), _scalar_or(new_lon)
