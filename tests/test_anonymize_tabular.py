"""privcity.anonymize.tabular: Mondrian k-anonymity with l-diversity and t-closeness, checked by
the independent checkers (grouping on the released values), the checkers' earth mover's distance
checked against a transport linear program, real tables shipped in vega_datasets (the 1992 LA
riots victims, the cars table), utility measures and bad input."""
from __future__ import annotations

import math
import warnings
from collections import Counter, defaultdict

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from privcity.anonymize.tabular import (discernibility, k_anonymity, l_diversity, mondrian, ncp,
                                        t_closeness)

pd = pytest.importorskip("pandas")

# An unbalanced hierarchy (leaves at depths 1 and 2) for a categorical quasi-identifier, and one
# for a categorical sensitive attribute (hierarchical EMD).
REGION_TREE = {"north-a": "north", "north-b": "north", "south-a": "south", "south-b": "south",
               "south-c": "south", "east": "*", "north": "*", "south": "*"}
DISEASE_TREE = {"flu": "respiratory", "asthma": "respiratory", "hiv": "infectious",
                "hepatitis": "infectious", "cancer": "*", "respiratory": "*", "infectious": "*"}
COLORS = ["red", "green", "blue", "grey, dark"]
FLOATS = [-2.5, 0.0, 0.1, 1e-3, 7.25, 100.0, 1 / 3]


# --- helpers of the tests (none from privcity) ----------------------------------------------------

def path_to_root(tree: dict, node) -> list:
    out = [node]
    while out[-1] != "*":
        out.append(tree[out[-1]])
    return out


def lowest_common_ancestor(tree: dict, values) -> str:
    paths = [path_to_root(tree, v)[::-1] for v in values]
    common = "*"
    for level in zip(*paths):
        if len(set(level)) > 1:
            break
        common = level[0]
    return str(common)


def column(table, name) -> list:
    return table[name].tolist()


def assert_release_is_tight(original, released, partition, qi, kinds, trees):
    """Same ids <-> same released tuple; ids by first appearance; each released value is exactly
    the range / set / lowest common ancestor of the class's original values."""
    rows = len(partition)
    tuples = list(zip(*(column(released, c) for c in qi)))
    id_of_tuple: dict = {}
    for tup, pid in zip(tuples, partition.tolist()):
        assert id_of_tuple.setdefault(tup, pid) == pid
    assert len(set(id_of_tuple.values())) == len(id_of_tuple)
    first = list(dict.fromkeys(partition.tolist()))
    assert first == list(range(len(first)))
    assert partition.dtype == np.int64 and partition.shape == (rows,)
    members = defaultdict(list)
    for i, pid in enumerate(partition.tolist()):
        members[pid].append(i)
    for name in qi:
        raw, out = column(original, name), column(released, name)
        for pid, idx in members.items():
            label = out[idx[0]]
            values = [raw[i] for i in idx]
            if name in trees:
                assert label == lowest_common_ancestor(trees[name], values)
            elif kinds[name] == "numeric":
                lo, hi = map(float, label[1:-1].split(", "))
                assert label.startswith("[") and label.endswith("]")
                assert lo == min(values) and hi == max(values)
            elif label.startswith("{"):
                assert set(label[1:-1].split("|")) == {str(v) for v in values}
                assert len(set(values)) > 1
            else:
                assert {str(v) for v in values} == {label}


@st.composite
def tables(draw):
    n = draw(st.integers(4, 48))
    age = draw(st.lists(st.integers(0, 12), min_size=n, max_size=n))
    income = draw(st.lists(st.sampled_from(FLOATS), min_size=n, max_size=n))
    color = draw(st.lists(st.sampled_from(COLORS), min_size=n, max_size=n))
    region = draw(st.lists(st.sampled_from(["east", "north-a", "north-b", "south-a", "south-b",
                                            "south-c"]), min_size=n, max_size=n))
    disease = draw(st.lists(st.sampled_from(["flu", "asthma", "hiv", "hepatitis", "cancer"]),
                            min_size=n, max_size=n))
    stay = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    frame = pd.DataFrame({"age": np.array(age, np.int64), "income": np.array(income),
                          "color": color, "region": region, "disease": disease,
                          "stay": np.array(stay, np.int64)})
    if draw(st.booleans()):  # the same table as a numpy structured array
        table = np.empty(n, dtype=[("age", "i8"), ("income", "f8"), ("color", "U12"),
                                   ("region", "U8"), ("disease", "U10"), ("stay", "i8")])
        for name in table.dtype.names:
            table[name] = frame[name].to_numpy()
        return table
    return frame


# --- properties -----------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=tables(), data=st.data())
def test_checkers_confirm_k_l_t_and_release_is_tight(table, data):
    # Prepare
    n = len(table)
    qi = data.draw(st.lists(st.sampled_from(["age", "income", "color", "region"]), min_size=1,
                            max_size=4, unique=True))
    trees = {"region": REGION_TREE} if "region" in qi and data.draw(st.booleans()) else {}
    kinds = {"age": "numeric", "income": "numeric", "color": "set", "region": "set"}
    k = data.draw(st.integers(2, n))
    sensitive = data.draw(st.sampled_from(["disease", "stay", "disease-tree"]))
    l_kind = data.draw(st.sampled_from(["distinct", "entropy"]))
    l = data.draw(st.none() | st.sampled_from([1, 2, 3]) | st.sampled_from([1.5, 2.5]))
    if l_kind == "distinct" and l is not None:
        l = math.ceil(l)
    t = data.draw(st.none() | st.floats(0.0, 1.0))
    hierarchies = dict(trees)
    if sensitive == "disease-tree":
        sensitive = "disease"
        hierarchies["disease"] = DISEASE_TREE
    counts = Counter(column(table, sensitive))
    table_l = (len(counts) if l_kind == "distinct"
               else math.exp(-sum(c / n * math.log(c / n) for c in counts.values())))
    if l is not None:
        assume(abs(table_l - l) > 1e-9)
    kwargs = dict(l=l, l_kind=l_kind, t=t, sensitive=sensitive if l or t is not None else None,
                  hierarchies=hierarchies or None)

    # Execute
    if l is not None and table_l < l:
        with pytest.raises(ValueError, match="infeasible"):
            mondrian(table, qi, k, **kwargs)
        return
    released, partition = mondrian(table, qi, k, **kwargs)

    # Assert
    assert type(released) is type(table) and len(released) == n
    for name in ("disease", "stay"):
        assert column(released, name) == column(table, name)
    assert k_anonymity(released, qi) >= k
    if l is not None:
        assert l_diversity(released, qi, sensitive, kind=l_kind) >= l - 1e-9
    if t is not None:
        got = t_closeness(released, qi, sensitive, hierarchy=hierarchies.get(sensitive))
        assert got <= t + 1e-9
    assert_release_is_tight(table, released, partition, qi, kinds, trees)
    assert discernibility(partition) == int(np.sum(np.bincount(partition) ** 2))
    assert 0.0 <= ncp(table, released, qi, hierarchies=trees) <= 1.0


def transport_emd(p: np.ndarray, q: np.ndarray, dist: np.ndarray) -> float:
    """Earth mover's distance by its definition: the cheapest flow from p to q (a linear
    program)."""
    linprog = pytest.importorskip("scipy.optimize").linprog
    m = len(p)
    a_eq = np.zeros((2 * m, m * m))
    for i in range(m):
        a_eq[i, i * m:(i + 1) * m] = 1      # all of p_i leaves i
        a_eq[m + i, i::m] = 1               # q_i arrives at i
    res = linprog(dist.reshape(-1), A_eq=a_eq, b_eq=np.concatenate([p, q]), bounds=(0, None),
                  method="highs")
    assert res.status == 0
    return float(res.fun)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["flu", "asthma", "hiv",
                                                              "hepatitis", "cancer"]),
                          st.sampled_from([3, 5, 8, 13, 21])), min_size=2, max_size=40))
def test_checker_emd_is_the_transport_optimum(rows):
    # Prepare: a class column g, a categorical and a numeric sensitive column
    table = pd.DataFrame(rows, columns=["g", "disease", "level"])
    classes = sorted(set(table["g"]))
    leaves = sorted(set(table["disease"]))
    levels = sorted(set(table["level"]))
    height = {"*": 2, "respiratory": 1, "infectious": 1}

    def lca_height(a, b):
        if a == b:
            return 0
        common = set(path_to_root(DISEASE_TREE, a)) & set(path_to_root(DISEASE_TREE, b))
        return min(height[c] for c in common)

    grounds = {
        "equal": ("disease", leaves, lambda a, b: float(a != b)),
        "ordered": ("level", levels, lambda a, b: abs(levels.index(a) - levels.index(b))
                    / max(len(levels) - 1, 1)),
        "tree": ("disease", leaves, lambda a, b: lca_height(a, b) / 2),
    }

    for name, (col, domain, d) in grounds.items():
        dist = np.array([[d(a, b) for b in domain] for a in domain])
        q = np.array([np.mean(table[col] == v) for v in domain])
        expected = max(transport_emd(np.array([np.mean(table[col][table["g"] == g] == v)
                                               for v in domain]), q, dist) for g in classes)

        # Execute
        got = t_closeness(table, ["g"], col, hierarchy=DISEASE_TREE if name == "tree" else None)

        # Assert
        assert got == pytest.approx(expected, abs=1e-7), name


def brute_force_emds(groups: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """Largest ordered and equal-distance EMD over the classes, from each class's full
    distribution over the sorted distinct values (no shortcut: every value, every class)."""
    domain = np.unique(values)
    m = len(domain)
    q = np.array([np.mean(values == v) for v in domain])
    ordered, equal = 0.0, 0.0
    for g in np.unique(groups):
        p = np.array([np.mean(values[groups == g] == v) for v in domain])
        surplus = np.cumsum(p - q)[:-1]  # mass carried from each value to the next
        ordered = max(ordered, float(np.sum(np.abs(surplus))) / (m - 1) if m > 1 else 0.0)
        equal = max(equal, 0.5 * float(np.sum(np.abs(p - q))))
    return ordered, equal


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9),
                          st.sampled_from([-0.0, 0.0, 0.5, 1e-300, 2.0])
                          | st.floats(-1e6, 1e6, allow_nan=False)), min_size=1, max_size=80),
       st.booleans())
def test_checker_emd_matches_brute_force_on_many_distinct_values(rows, structured):
    # Prepare: floats mostly distinct, some repeated (and -0.0 equal to 0.0), up to ten classes
    groups = np.array([g for g, _ in rows], np.int64)
    values = np.array([v for _, v in rows])
    table = pd.DataFrame({"g": groups.astype(str), "x": values})
    if structured:
        table = table.to_records(index=False).astype([("g", "U2"), ("x", "f8")])
    want_ordered, want_equal = brute_force_emds(groups, values)

    # Execute
    got_ordered = t_closeness(table, ["g"], "x")
    got_equal = t_closeness(table, ["g"], "x", numeric=False)

    # Assert
    assert got_ordered == pytest.approx(want_ordered, rel=1e-12, abs=1e-15)
    assert got_equal == pytest.approx(want_equal, rel=1e-12, abs=1e-15)


@st.composite
def hierarchies_over(draw, leaves):
    """A random hierarchy: inner nodes under "*" or an earlier inner node, each leaf under "*"
    or an inner node (so unbalanced, and inner nodes may end up childless)."""
    inner = [f"n{i}" for i in range(draw(st.integers(0, 5)))]
    tree = {}
    for i, node in enumerate(inner):
        tree[node] = draw(st.sampled_from(["*"] + inner[:i]))
    for leaf in leaves:
        tree[leaf] = draw(st.sampled_from(["*"] + inner))
    return tree


def node_heights(tree: dict) -> dict:
    kids = defaultdict(list)
    for child, parent in tree.items():
        kids[parent].append(child)

    def height(node):
        return 1 + max(height(c) for c in kids[node]) if kids[node] else 0
    return {node: height(node) for node in list(tree) + ["*"]}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.sampled_from(list("abcdef"))), min_size=2,
                max_size=40),
       hierarchies_over(list("abcdef")))
def test_checker_tree_emd_is_the_transport_optimum_on_random_hierarchies(rows, tree):
    # Prepare: ground distance height(lowest common ancestor) / height("*")
    table = pd.DataFrame(rows, columns=["g", "s"])
    heights = node_heights(tree)
    assume(heights["*"] > 0)
    domain = sorted(set(table["s"]))

    def distance(a, b):
        common = set(path_to_root(tree, a)) & set(path_to_root(tree, b))
        return min(heights[c] for c in common) / heights["*"]

    dist = np.array([[distance(a, b) for b in domain] for a in domain])
    q = np.array([np.mean(table["s"] == v) for v in domain])
    expected = max(transport_emd(np.array([np.mean(table["s"][table["g"] == g] == v)
                                           for v in domain]), q, dist)
                   for g in sorted(set(table["g"])))

    # Execute
    got = t_closeness(table, ["g"], "s", hierarchy=tree)

    # Assert
    assert got == pytest.approx(expected, abs=1e-7)


def test_t_closeness_of_a_large_table_with_many_distinct_floats():
    # Prepare: 200,000 rows, 150,000 distinct floats, 300 classes leaning on the value
    rng = np.random.default_rng(7)
    n, n_classes, m = 200_000, 300, 150_000
    pool = rng.permutation(np.unique(rng.normal(50.0, 20.0, 2 * m)))[:m]
    values = rng.permutation(np.concatenate([pool, rng.choice(pool, n - m)]))
    lean = np.argsort(np.argsort(values + rng.normal(0.0, 30.0, n)))
    groups = lean * n_classes // n
    table = pd.DataFrame({"g": np.array([f"c{i}" for i in range(n_classes)])[groups],
                          "x": values})
    # reference: each class's cumulative distribution over the m ranks, against the table's
    ranks = np.unique(values, return_inverse=True)[1]
    table_cdf = np.cumsum(np.bincount(ranks, minlength=m)) / n
    ordered, equal = np.zeros(n_classes), np.zeros(n_classes)
    for g in range(n_classes):
        hist = np.bincount(ranks[groups == g], minlength=m) / np.sum(groups == g)
        ordered[g] = np.sum(np.abs(np.cumsum(hist) - table_cdf)[:-1]) / (m - 1)
        equal[g] = 0.5 * np.sum(np.abs(hist - np.diff(table_cdf, prepend=0.0)))
    worst = int(np.argmax(ordered))
    wasserstein_distance = pytest.importorskip("scipy.stats").wasserstein_distance

    # Execute
    got_ordered = t_closeness(table, ["g"], "x")
    got_equal = t_closeness(table, ["g"], "x", numeric=False)

    # Assert: the ordered EMD is the 1-D Wasserstein distance between rank distributions
    assert len(np.unique(values)) == m
    assert wasserstein_distance(ranks[groups == worst], ranks) / (m - 1) == pytest.approx(
        ordered[worst], rel=1e-9)
    assert got_ordered == pytest.approx(ordered.max(), rel=1e-9)
    assert got_equal == pytest.approx(equal.max(), rel=1e-9)
    assert 0.0 < got_ordered < got_equal <= 1.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["flu", "asthma", "hiv",
                                                              "hepatitis", "cancer"]),
                          st.sampled_from([3, 5, 8, 13, 21])), min_size=2, max_size=40))
def test_cut_search_emd_and_entropy_agree_with_the_checkers(rows):
    # Prepare: the vectorised class statistics that Mondrian's cut search uses, on classes g
    from privcity.anonymize import _tabular_encode as enc
    from privcity.anonymize._tabular_mondrian import Sensitive

    table = pd.DataFrame(rows, columns=["g", "disease", "level"])
    groups = table["g"].to_numpy()
    for col, tree in (("disease", None), ("level", None), ("disease", DISEASE_TREE)):
        coded = enc.code_column(table, col, tree)
        kind = "tree" if tree else ("numeric" if coded.kind == "numeric" else "equal")
        want_t = t_closeness(table, ["g"], col, hierarchy=tree)
        want_l = l_diversity(table, ["g"], col, kind="entropy")

        def ok(l=None, t=None):
            sens = Sensitive(coded.codes, coded.n_codes, kind, coded.tree, l, "entropy", t)
            return sens.groups_ok(coded.codes, groups, 6)[np.unique(groups)].all()

        # Execute / Assert: the largest class EMD is exactly where the constraint flips
        assert ok(t=want_t + 1e-9)
        if want_t > 1e-6:
            assert not ok(t=want_t - 1e-6)
        assert ok(l=want_l * (1 - 1e-9))
        assert not ok(l=want_l * (1 + 1e-6))


# --- real tables ----------------------------------------------------------------------------------

RIOT_QI = ["age", "gender", "race", "neighborhood"]
RACE_TREE = {"White": "*", "Non-white": "*", "Black": "Non-white", "Latino": "Non-white",
             "Asian": "Non-white"}


@pytest.fixture(scope="module")
def riots():
    local_data = pytest.importorskip("vega_datasets").local_data
    return local_data.la_riots()


@pytest.fixture(scope="module")
def cars():
    local_data = pytest.importorskip("vega_datasets").local_data
    with warnings.catch_warnings():  # vega_datasets passes read_json a keyword pandas deprecates
        warnings.simplefilter("ignore", DeprecationWarning)
        table = local_data.cars()
    return table.dropna(subset=["Horsepower", "Miles_per_Gallon"])


def test_la_riots_missing_age_is_named(riots):
    # Assert: one victim's age is unknown
    assert riots["age"].isna().sum() == 1
    with pytest.raises(ValueError, match="column 'age' has 1 missing"):
        mondrian(riots, RIOT_QI, 3)


@pytest.mark.parametrize("k", [3, 5])
def test_la_riots_k_anonymity(riots, k):
    # Prepare
    victims = riots.dropna(subset=["age"])

    # Execute
    released, partition = mondrian(victims, RIOT_QI, k)

    # Assert
    assert len(victims) == 62 and k_anonymity(victims, RIOT_QI) == 1
    assert k_anonymity(released, RIOT_QI) >= k
    assert min(np.bincount(partition)) >= k
    assert released.index.equals(victims.index)
    assert released["first_name"].equals(victims["first_name"])
    assert_release_is_tight(victims, released, partition, RIOT_QI,
                            {"age": "numeric"} | dict.fromkeys(RIOT_QI[1:], "set"), {})
    assert ncp(victims, released, RIOT_QI) < 0.5


@pytest.mark.parametrize("l_kind", ["distinct", "entropy"])
def test_la_riots_l_diversity_of_cause_of_death(riots, l_kind):
    # Prepare
    victims = riots.dropna(subset=["age"])
    plain, _ = mondrian(victims, RIOT_QI, 3)

    # Execute
    released, partition = mondrian(victims, RIOT_QI, 3, l=2, l_kind=l_kind, sensitive="type")

    # Assert: k alone leaves classes whose members all died of the same cause
    assert l_diversity(plain, RIOT_QI, "type") == 1
    assert l_diversity(released, RIOT_QI, "type", kind=l_kind) >= 2 - 1e-9
    assert k_anonymity(released, RIOT_QI) >= 3
    assert partition.max() + 1 >= 5


def test_la_riots_hierarchies_and_t_closeness(riots):
    # Prepare
    victims = riots.dropna(subset=["age"])
    trees = {"race": RACE_TREE, "gender": {"Male": "*", "Female": "*"}}

    # Execute
    released, partition = mondrian(victims, RIOT_QI, 4, t=0.35, sensitive="type",
                                   hierarchies=trees)

    # Assert
    assert set(released["race"]) <= {"*", "Non-white", "White", "Black", "Latino", "Asian"}
    assert set(released["gender"]) <= {"*", "Male", "Female"}
    assert k_anonymity(released, RIOT_QI) >= 4
    assert t_closeness(released, RIOT_QI, "type") <= 0.35 + 1e-9
    assert t_closeness(plain := mondrian(victims, RIOT_QI, 4, hierarchies=trees)[0], RIOT_QI,
                       "type") > 0.35
    assert_release_is_tight(victims, released, partition, RIOT_QI,
                            {"age": "numeric", "neighborhood": "set"}, trees)
    assert ncp(victims, plain, RIOT_QI, hierarchies=trees) <= ncp(victims, released, RIOT_QI,
                                                                  hierarchies=trees)


CAR_QI = ["Cylinders", "Displacement", "Horsepower", "Weight_in_lbs", "Acceleration"]


def test_cars_numeric_quasi_identifiers_with_t_closeness_of_mileage(cars):
    # Execute
    released, partition = mondrian(cars, CAR_QI, 5, t=0.15, sensitive="Miles_per_Gallon")

    # Assert
    assert len(cars) == 392
    assert k_anonymity(released, CAR_QI) >= 5
    assert t_closeness(released, CAR_QI, "Miles_per_Gallon") <= 0.15 + 1e-9
    assert t_closeness(released, CAR_QI, "Miles_per_Gallon", numeric=False) > 0.15
    assert_release_is_tight(cars, released, partition, CAR_QI, dict.fromkeys(CAR_QI, "numeric"), {})


def test_structured_array_in_structured_array_out(cars):
    # Prepare
    table = cars[CAR_QI + ["Origin"]].to_records(index=False)
    table = table.astype([(n, "f8" if n in CAR_QI else "U8") for n in table.dtype.names])

    # Execute
    released, partition = mondrian(table, CAR_QI, 10, l=2, sensitive="Origin")

    # Assert
    assert isinstance(released, np.ndarray) and released.dtype.names == table.dtype.names
    assert released["Cylinders"].dtype.kind == "U" and released["Origin"].dtype == table["Origin"].dtype
    assert k_anonymity(released, CAR_QI) >= 10 and l_diversity(released, CAR_QI, "Origin") >= 2
    assert_release_is_tight(table, released, partition, CAR_QI, dict.fromkeys(CAR_QI, "numeric"), {})


# --- utility --------------------------------------------------------------------------------------

def test_ncp_below_full_generalization_and_grows_with_k(cars):
    # Prepare: the trivial release, every cell generalized to the column's full range
    trivial = cars.copy()
    for name in CAR_QI:
        trivial[name] = f"[{cars[name].min()}, {cars[name].max()}]"

    # Execute
    losses = [ncp(cars, mondrian(cars, CAR_QI, k)[0], CAR_QI) for k in (2, 4, 8, 16, 32, 64)]

    # Assert
    assert ncp(cars, trivial, CAR_QI) == 1.0
    assert ncp(cars, cars, CAR_QI) == 0.0
    assert 0 < losses[0] and losses[-1] < 1.0
    assert losses == sorted(losses) and len(set(losses)) == len(losses)


def test_ncp_hand_checked():
    # Prepare: age range 20..60 (40), colour domain 4 values, region hierarchy 6 leaves
    original = pd.DataFrame({"age": [20, 30, 40, 60], "color": ["red", "green", "blue", "grey"],
                             "region": ["east", "north-a", "north-b", "south-c"]})
    released = pd.DataFrame({"age": ["[20, 30]", "[20, 30]", "[40, 60]", "[40, 60]"],
                             "color": ["{green|red}", "{green|red}", "blue", "*"],
                             "region": ["east", "north", "north", "*"]})

    # Execute
    got = ncp(original, released, ["age", "color", "region"], hierarchies={"region": REGION_TREE})

    # Assert: age 10/40 x 2 + 20/40 x 2; colour 1/3 x 2 + 0 + 1; region 0 + 1/5 x 2 + 1
    assert got == pytest.approx((0.25 * 2 + 0.5 * 2 + 2 / 3 + 1 + 0.4 + 1) / 12)


def test_discernibility_hand_checked():
    # Execute / Assert
    assert discernibility(np.array([0, 0, 1, 1, 1, 2])) == 4 + 9 + 1
    assert discernibility([5, 5, 5, 5]) == 16
    assert discernibility(np.arange(7)) == 7


def test_checkers_hand_checked():
    # Prepare: classes A (flu, flu, hiv) and B (flu, cancer, cancer, hiv)
    table = pd.DataFrame({"q": list("AAABBBB"),
                          "d": ["flu", "flu", "hiv", "flu", "cancer", "cancer", "hiv"],
                          "v": [1, 1, 2, 1, 3, 3, 2]})

    # Execute / Assert
    assert k_anonymity(table, ["q"]) == 3
    assert l_diversity(table, ["q"], "d") == 2
    assert l_diversity(table, ["q"], "d", kind="entropy") == pytest.approx(
        math.exp(-(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))))
    # table: flu 3/7, hiv 2/7, cancer 2/7; class A: 2/3, 1/3, 0 (B: 1/4, 1/4, 1/2 is closer)
    assert t_closeness(table, ["q"], "d") == pytest.approx(0.5 * (2 / 3 - 3 / 7 + 1 / 3 - 2 / 7 + 2 / 7))
    # ordered over values 1 < 2 < 3: class A's cumulative surplus (2/3 - 3/7) + (1 - 5/7), over 2
    assert t_closeness(table, ["q"], "v") == pytest.approx((2 / 3 - 3 / 7 + 1 - 5 / 7) / 2)


# --- bad input ------------------------------------------------------------------------------------

@pytest.fixture
def small():
    return pd.DataFrame({"age": [20, 21, 22, 30, 31, 32], "sex": list("FMFMFM"),
                         "d": ["a", "b", "a", "b", "a", "c"]})


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(k=1), "k must be >= 2"),
    (dict(k=0), "k must be >= 2"),
    (dict(k=7), "k = 7 exceeds the number of rows"),
    (dict(quasi_identifiers=["age", "zip"]), "unknown column 'zip'"),
    (dict(quasi_identifiers=[]), "at least one column"),
    (dict(l=2), "need the sensitive column"),
    (dict(t=0.2), "need the sensitive column"),
    (dict(l=4, sensitive="d"), "l = 4 is infeasible: the table itself has 3 distinct"),
    (dict(l=2.9, l_kind="entropy", sensitive="d"), "infeasible"),
    (dict(l=0.5, sensitive="d"), "l must be a finite number >= 1"),
    (dict(t=-0.1, sensitive="d"), "t must be a finite number >= 0"),
    (dict(l=2, l_kind="recursive", sensitive="d"), "l_kind must be one of"),
    (dict(sensitive="age"), "both sensitive and a quasi-identifier"),
    (dict(sensitive="zip", l=2), "sensitive: unknown column 'zip'"),
    (dict(hierarchies={"sex": {"F": "*", "M": "X"}}), "'X' has no parent"),
    (dict(hierarchies={"sex": {"F": "G", "G": "F"}}), "cycle"),
    (dict(hierarchies={"sex": {"F": "*"}}), "value 'M' is absent"),
    (dict(hierarchies={"sex": {"F": "P", "M": "P", "P": "*"}, "zip": {}}), "unknown column 'zip'"),
])
def test_bad_input_is_a_named_value_error(small, kwargs, message):
    # Prepare
    args = dict(quasi_identifiers=["age", "sex"], k=2) | kwargs

    # Execute / Assert
    with pytest.raises(ValueError, match=message):
        mondrian(small, **args)


def test_missing_values_in_a_quasi_identifier(small):
    # Prepare
    with_nan = small.astype({"age": float})
    with_nan.loc[2, "age"] = np.nan
    with_none = small.astype({"sex": object})
    with_none.loc[0, "sex"] = None
    array = np.array([(1.0, "a"), (np.nan, "b"), (2.0, "a")], dtype=[("x", "f8"), ("d", "U1")])

    # Execute / Assert
    with pytest.raises(ValueError, match="column 'age' has 1 missing"):
        mondrian(with_nan, ["age", "sex"], 2)
    with pytest.raises(ValueError, match="column 'sex' has 1 missing"):
        mondrian(with_none, ["age", "sex"], 2)
    with pytest.raises(ValueError, match="column 'x' has 1 missing"):
        mondrian(array, ["x"], 2)


def test_not_a_table_and_not_an_integer_k(small):
    # Execute / Assert
    with pytest.raises(TypeError, match="pandas DataFrame or a 1-D numpy structured array"):
        mondrian(np.zeros((4, 2)), ["a"], 2)
    with pytest.raises(TypeError, match="k must be an integer"):
        mondrian(small, ["age"], 2.5)
    with pytest.raises(ValueError, match="unknown column 'zip'"):
        k_anonymity(small, ["zip"])


def test_pandas_stays_an_optional_import(run_python):
    # Execute
    proc = run_python("import sys, numpy as np\n"
                      "from privcity.anonymize.tabular import mondrian, k_anonymity\n"
                      "t = np.array([(i % 7, 'ab'[i % 2]) for i in range(40)],"
                      " dtype=[('x', 'i8'), ('s', 'U1')])\n"
                      "out, part = mondrian(t, ['x', 's'], 4)\n"
                      "assert k_anonymity(out, ['x', 's']) >= 4\n"
                      "print('pandas' in sys.modules)")

    # Assert
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_pandas_na_and_nat_in_structured_arrays_are_missing_values():
    # Prepare
    pd = pytest.importorskip("pandas")
    a = np.zeros(6, dtype=[("c", "O"), ("x", "i8")])
    a["c"], a["x"] = ["a", "b", pd.NA, "a", "b", "c"], [1, 2, 3, 4, 5, 6]
    b = np.zeros(4, dtype=[("t", "M8[s]"), ("x", "i8")])
    b["t"] = [np.datetime64("2020-01-01"), np.datetime64("NaT"), np.datetime64("2020-01-02"),
              np.datetime64("2020-01-03")]

    # Execute / Assert
    with pytest.raises(ValueError, match="'c'"):
        mondrian(a, ["c", "x"], 2)
    with pytest.raises(ValueError, match="'t'"):
        mondrian(b, ["t", "x"], 2)
