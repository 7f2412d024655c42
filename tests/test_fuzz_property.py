"""Property tests: whatever a suite file holds, loading it returns a suite or raises
``UserInputError``, each rendered line starting with the file's path and bounded in length.

The inputs start from the quickstart suite shrunk to two cells and are mutated at random (set a
field to any YAML value, delete or rename keys, splice YAML syntax into the text, flip bytes),
so they stay close enough to a valid suite to reach validation and expansion, not only the
parser. A plain ``yaml.safe_load`` of the quickstart is the seed; nothing here trains.
"""

from __future__ import annotations

import copy
import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradatlas.errors import UserInputError
from gradatlas.suites import load_suite
from gradatlas.suites.yamlsafe import read_suite_yaml

SUITES_DIR = Path(__file__).resolve().parents[1] / "suites"
MAX_LINE = 2_100  # an error line longer than this quotes an unbounded value
TIME_LIMIT_S = 30  # one example; a slow CI machine is far below this for a 4-trial suite

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,  # no .hypothesis/ folder in the tree
)


def small_quickstart() -> dict[str, Any]:
    """The quickstart suite with a 2-cell grid and a 60-step budget (4 trials)."""
    doc = yaml.safe_load((SUITES_DIR / "quickstart.yaml").read_text(encoding="utf-8"))
    doc["grid"] = {"depth": [2, 3], "activation": ["relu"]}
    doc["seeds"] = 2
    doc["train"] = {"steps": 60, "batch_size": 128, "optimizer": "momentum", "lr": 0.02}
    return doc


BASE = small_quickstart()

# -- values ----------------------------------------------------------------------------------------
# Hypothesis favours the first entries of a list it samples from: the grid and the training
# settings come first, as they have the most validation behind them (``name`` comes last).
KNOWN_KEYS = [
    *["depth", "width", "activation", "init", "norm", "dropout", "residual", "lr", "optimizer"],
    *["batch_size", "epochs", "steps", "weight_decay", "grad_clip", "schedule", "precision"],
    *["eval_every", "probe_batch", "target_loss", "exclude", "include", "value", "mode", "std"],
    *["gain", "momentum", "num_samples", "train_split", "seed", "options", "limits"],
    *reversed(BASE),
    *(k for section in BASE.values() if isinstance(section, dict) for k in section),
]
FIRST = ("grid", "train", "model", "seeds", "exclude", "include")
NAMES = [
    *["relu", "tanh", "sigmoid", "gelu", "kaiming_normal", "xavier_normal", "normal"],
    *["sgd", "adam", "momentum", "adamw", "mnist1d", "digits", "mlp", "cnn", "batch"],
    *["layer", "none", "constant", "cosine", "32", "bf16-mixed", "1e-3", "nan", "inf", ""],
]
keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=12))
scalars = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2, 10**6, 10**9, 2**31, 2**32, 2**63, -(2**63), 10**100]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 0.5, 1e-300, 1e300, float("nan"), float("inf"), -float("inf")]),
    st.booleans(),
    st.none(),
    st.sampled_from(NAMES),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=10,
)


# -- mutations ---------------------------------------------------------------------------------
def paths(doc: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every path below ``doc``: tuples of keys and indices."""
    items = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    )
    for key, value in items:
        yield (*prefix, key)
        yield from paths(value, (*prefix, key))


def get(doc: Any, path: tuple) -> Any:
    for step in path:
        doc = doc[step]
    return doc


@st.composite
def mutated_docs(draw: st.DrawFn) -> Any:
    doc = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        existing = sorted(paths(doc), key=lambda p: (str(p[0]) not in FIRST, len(p) < 2))
        mappings = [p for p in [(), *existing] if isinstance(get(doc, p), dict)]
        kind = draw(st.sampled_from(["set", "set", "add", "delete", "rename"]))
        if kind == "set" and existing:  # an existing field or list item, to any value
            path = draw(st.sampled_from(existing))
            get(doc, path[:-1])[path[-1]] = draw(values)
        elif kind == "add":  # a new (or existing) key in any mapping
            get(doc, draw(st.sampled_from(mappings)))[draw(keys)] = draw(values)
        elif kind in ("delete", "rename") and existing:
            path = draw(st.sampled_from(existing))
            holder = get(doc, path[:-1])
            value = holder.pop(path[-1])
            if kind == "rename" and isinstance(holder, dict):
                holder[draw(keys)] = value
    return doc


SNIPPETS = [
    "seeds: 5\n",
    "name: again\n",
    "  lr: 9\n",
    "x: &a [1, 2]\n",
    "y: *a\n",
    "z: *nope\n",
    "  <<: {lr: 1}\n",
    "t: !!python/tuple [1]\n",
    "u: !!binary aGk=\n",
    "v: !x 1\n",
    "w: [[[[[[[[\n",
    "? [a]\n: 1\n",
    "---\n",
    "...\n",
    "\t",
    ": ",
    "- ",
    "&r [*r]\n",
    "7: 1\n",
    "yes: 2\n",
    "~: 3\n",
    "d: 2001-02-30\n",
    "e: 0x\n",
    "f: '\n",
    '"\\x00"\n',
]


@st.composite
def suite_bytes(draw: st.DrawFn) -> bytes:
    """A mutated suite as YAML, sometimes with YAML syntax spliced in or bytes flipped."""
    text = yaml.safe_dump(draw(mutated_docs()), sort_keys=False, allow_unicode=True)
    mode = draw(st.sampled_from(["dump", "dump", "dump", "splice", "bytes"]))
    if mode == "splice":
        lines = text.splitlines(keepends=True)
        for _ in range(draw(st.integers(min_value=1, max_value=3))):
            lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(SNIPPETS)))
        text = "".join(lines)
    data = text.encode("utf-8")
    if mode == "bytes":
        data_list = bytearray(data)
        for _ in range(draw(st.integers(min_value=1, max_value=4))):
            at = draw(st.integers(min_value=0, max_value=len(data_list)))
            op = draw(st.sampled_from(["insert", "replace", "delete"]))
            if op == "insert":
                data_list[at:at] = draw(st.binary(min_size=1, max_size=4))
            elif op == "replace" and at < len(data_list):
                data_list[at] = draw(st.integers(min_value=0, max_value=255))
            else:
                del data_list[at : at + draw(st.integers(min_value=1, max_value=8))]
        data = bytes(data_list)
    return data


raw_bytes = st.one_of(
    suite_bytes(),
    st.binary(max_size=2_000),
    st.text(alphabet="{}[]:-,&*!|>'\"%@`#?~ \n\tabc01.", max_size=300).map(str.encode),
)


# -- the properties --------------------------------------------------------------------------------
class TookTooLong(BaseException):
    """A BaseException, so no ``except Exception`` under test can swallow it."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def _raise(signum: int, frame: Any) -> None:
        raise TookTooLong(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_error(err: UserInputError, path: Path) -> None:
    rendered = err.render()
    assert rendered, "an error with no message"
    for line in re.split(r"\r\n|\r|\n", rendered):  # line breaks a terminal shows as such
        assert len(line) < MAX_LINE, f"unbounded error line ({len(line)} chars): {line[:200]}..."
        assert line.startswith(str(path)), f"error line does not name the file: {line[:200]!r}"


@pytest.fixture(scope="module")
def suite_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "suite.yaml"


@SETTINGS
@given(data=suite_bytes())
def test_load_suite_returns_a_suite_or_raises_a_located_input_error(suite_path, data):
    suite_path.write_bytes(data)
    try:
        with time_limit(TIME_LIMIT_S):
            load_suite(str(suite_path))
    except UserInputError as err:  # includes SuiteErrors
        check_error(err, suite_path)


@SETTINGS
@given(data=raw_bytes)
def test_read_suite_yaml_returns_a_mapping_or_raises_a_located_input_error(suite_path, data):
    suite_path.write_bytes(data)
    try:
        with time_limit(TIME_LIMIT_S):
            text, value = read_suite_yaml(suite_path)
    except UserInputError as err:
        check_error(err, suite_path)
    else:
        assert isinstance(text, str)
        assert isinstance(value, dict) and all(isinstance(k, str) for k in value)


def test_the_unmutated_seed_suite_loads(suite_path):
    """The mutations start from a valid 4-trial suite, or the properties test little."""
    suite_path.write_text(yaml.safe_dump(BASE, sort_keys=False), encoding="utf-8")
    assert len(load_suite(str(suite_path)).trials) == 4
