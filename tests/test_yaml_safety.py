"""The hardened suite reader: every hostile or broken input ends in data or a located
``UserInputError`` (file, then line/column or field path), never a traceback or a blow-up.

Most cases run twice, with libyaml's C parser and with the pure-Python one the reader falls back
to where PyYAML was built without libyaml."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from gradatlas.errors import MAX_MESSAGE, UserInputError
from gradatlas.suites import yamlsafe
from gradatlas.suites.yamlsafe import (
    EMPTY_MESSAGE,
    MAX_DEPTH,
    MAX_EXPANDED_NODES,
    MAX_SUITE_BYTES,
    parse_suite_yaml,
    read_suite_yaml,
)

SUITES_DIR = Path(__file__).resolve().parents[1] / "suites"
BUILTIN = sorted(SUITES_DIR.glob("*.yaml"))

SUITE = """\
name: s
description: a small suite
grid:
  depth: [2, 3]
  activation:
    - relu
train:
  steps: 60
  lr: 0.02
"""

LOADERS = {"c": getattr(yaml, "CSafeLoader", None), "python": yaml.SafeLoader}


@pytest.fixture(params=sorted(LOADERS))
def read(request, monkeypatch, tmp_path):
    """``read(content) -> data``: writes ``content`` (str or bytes) to a file and reads it."""
    loader = LOADERS[request.param]
    if loader is None:
        pytest.skip("PyYAML built without libyaml")
    monkeypatch.setattr(yamlsafe, "_LOADER", loader)

    def _read(content: str | bytes, name: str = "suite.yaml") -> object:
        path = tmp_path / name
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8", newline="")
        else:
            path.write_bytes(content)
        return read_suite_yaml(path)[1]

    _read.tmp_path = tmp_path  # type: ignore[attr-defined]
    return _read


def error(read, content: str | bytes) -> UserInputError:
    """The error reading ``content`` raises; checks it names the file and is bounded."""
    with pytest.raises(UserInputError) as info:
        read(content)
    err = info.value
    assert err.source == str(read.tmp_path / "suite.yaml")
    assert err.render().startswith(f"{err.source}: ")
    assert len(err.render()) <= MAX_MESSAGE
    return err


# -- valid files read exactly as safe_load reads them -------------------------------------------
@pytest.mark.parametrize("path", BUILTIN, ids=[p.stem for p in BUILTIN])
def test_builtin_suites_parse_to_the_same_data_as_safe_load(path):
    text, data = read_suite_yaml(path)
    assert text == path.read_text(encoding="utf-8")
    assert data == yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and "name" in data


def test_plain_scalars_resolve_as_safe_load_does(read):
    text = textwrap.dedent(
        """\
        name: s
        ints: [0, -7, 0x1f, 0o17, 1_000, 190:20:30]
        floats: [1.5, 1.0e-3, .inf, -.inf, 6.8523015e+5]
        bools: [true, false, yes, no, on, off]
        nulls: [null, ~, ]
        strs: ['7', "x", plain text, 1.2.3]
        date: 2001-12-14
        explicit: [!!str 3, !!float 3, !!int "7", !!bool "true", !!null "", ! 5]
        """
    )
    assert read(text) == yaml.safe_load(text)
    nan = read("name: s\nx: .nan\n")["x"]
    assert nan != nan


def test_anchors_and_aliases_reuse_values(read):
    text = (
        "name: s\ngrid:\n  activation: [&a relu, *a]\n  init: &i [{name: normal, std: 1}]\nx: *i\n"
    )
    data = read(text)
    assert data == yaml.safe_load(text)
    assert data["x"] is data["grid"]["init"]  # shared, as safe_load does: never copied


def test_merge_keys_work_as_in_safe_load_and_explicit_keys_win(read):
    text = textwrap.dedent(
        """\
        name: s
        base: &base {batch_size: 64, lr: 0.1, steps: 5}
        more: &more {lr: 0.5, optimizer: adam}
        train:
          <<: *base
          lr: 0.02
        both:
          <<: [*more, *base]
          steps: 9
        """
    )
    data = read(text)
    assert (
        data["train"] == yaml.safe_load(text)["train"] == {"batch_size": 64, "lr": 0.02, "steps": 5}
    )
    # Of several merged mappings the first listed wins (the merge-key spec; PyYAML 6.0.4 lets
    # the later one win unless the two key strings happen to be the same object).
    assert data["both"] == {"lr": 0.5, "optimizer": "adam", "batch_size": 64, "steps": 9}


def test_merged_mappings_are_merged_after_their_own_merges(read):
    text = "a: &a {x: 1, y: 1}\nb: &b {<<: *a, y: 2}\nc: {<<: *b, z: 3}\nname: s\n"
    data = read(text)
    assert data["b"] == yaml.safe_load(text)["b"] == {"x": 1, "y": 2}
    # c merges b as b reads; PyYAML 6.0.4 gives y: 1 here (it dedupes merged keys by the
    # identity of their strings, and one-letter strings are shared objects).
    assert data["c"] == {"x": 1, "y": 2, "z": 3}


def test_two_merge_keys_in_one_mapping_are_a_duplicate_key(read):
    err = error(read, "a: &a {x: 1}\nb: &b {y: 1}\nname: s\nt:\n  <<: *a\n  <<: *b\n")
    assert err.field == "t.<<" and err.message == "duplicate key on line 6 (also on line 5)"


def test_a_merge_of_something_not_a_mapping_is_refused(read):
    err = error(read, "name: s\nx: &x [1, 2]\ntrain:\n  <<: *x\n")
    assert err.field == "train.<<" and "mapping" in err.message


def test_parse_suite_yaml_reads_from_memory(read):
    assert parse_suite_yaml(SUITE, "mem") == yaml.safe_load(SUITE)
    assert parse_suite_yaml(SUITE.encode(), "mem") == yaml.safe_load(SUITE)
    assert parse_suite_yaml("0.5", "--set train.lr", require_mapping=False) == 0.5
    assert parse_suite_yaml("", "--set x", require_mapping=False) is None
    assert parse_suite_yaml("\ufeffname: s\n", "mem") == {"name": "s"}
    for bad in ("name: s\x00\n", "name: s\udcff\n"):  # a str may hold what bytes cannot
        with pytest.raises(UserInputError, match="at line 1, column 8 is not allowed"):
            parse_suite_yaml(bad, "mem")
    with pytest.raises(UserInputError) as info:
        parse_suite_yaml("[1, !!python/tuple [2]]", "--set x", require_mapping=False)
    assert info.value.render() == (
        "--set x: [1]: YAML tag '!!python/tuple' is not allowed (suites are plain data)"
    )


# -- keys: strings, once each ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "field", "line"),
    [
        (SUITE + "name: again\n", "name", 1),
        (SUITE.replace("  lr: 0.02\n", "  lr: 0.02\n  lr: 5.0\n"), "train.lr", 9),
        (SUITE.replace("grid:\n", "grid:\n  depth: [50]\n"), "grid.depth", 4),
        ("name: s\nx: {a: 1, 'a': 2}\n", "x.a", 2),
    ],
    ids=["top-level", "nested", "grid-factor", "quoted-same-key"],
)
def test_duplicate_keys_are_refused_with_both_lines(read, content, field, line):
    err = error(read, content)
    assert err.field == field
    assert err.message.startswith("duplicate key on line ")
    assert f"(also on line {line})" in err.message


@pytest.mark.parametrize(
    ("content", "field", "quoted"),
    [
        ("name: s\ngrid:\n  7: [1]\n", "grid", "key 7 is not a string"),
        ("name: s\ntrain:\n  yes: 1\n", "train", "key True is not a string"),
        ("? ~\n: 1\nname: s\n", None, "key None is not a string"),
        ("name: s\n1.5: x\n", None, "key 1.5 is not a string"),
        ("name: s\ngrid:\n  ? [depth]\n  : [1]\n", "grid", "a key must be a string, not a list"),
        ("name: s\n? {a: 1}\n: 1\n", None, "a key must be a string, not a mapping"),
    ],
    ids=["int", "bool", "null", "float", "list", "mapping"],
)
def test_keys_that_are_not_strings_are_refused_at_their_mapping(read, content, field, quoted):
    err = error(read, content)
    assert err.field == field
    assert err.message.startswith(quoted)


# -- tags: plain data only, never objects -------------------------------------------------------
@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:os.system ['echo PWNED > {canary}']",
        "!!python/object/apply:subprocess.check_output [['id']]",
        "!!python/name:os.system",
        "!!python/object/new:type ['x', [], {{}}]",
        "!!python/tuple [1, 2]",
        "!!binary aGVsbG8=",
        "!!set {{a, b}}",
        "!!omap [a: 1]",
        "!custom_tag x",
        "!<tag:example.com,2024:thing> x",
    ],
)
def test_tags_other_than_plain_data_are_refused_at_their_path(read, tag):
    canary = read.tmp_path / "PWNED"
    tag = tag.format(canary=canary)
    err = error(read, SUITE.replace("- relu", f"- {tag}"))
    assert err.field == "grid.activation[0]"
    name = tag.split()[0]
    if name.startswith("!<"):
        name = name[2:-1]
    assert err.message == f"YAML tag {name!r} is not allowed (suites are plain data)"
    assert not canary.exists()


def test_a_tag_at_the_top_level_is_refused(read):
    err = error(read, "!!python/object/apply:os.system ['true']\n")
    assert err.field is None and "'!!python/object/apply:os.system' is not allowed" in err.message


@pytest.mark.parametrize(
    ("value", "what"),
    [
        ("!!int abc", "'abc' cannot be read as an integer"),
        ("!!float x", "'x' cannot be read as a number"),
        ("!!bool maybe", "'maybe' cannot be read as a boolean"),
        ("2001-02-30", "'2001-02-30' cannot be read as a date"),
        ("9" * 5000, "cannot be read as an integer (too many digits)"),
        ("<<", "'<<' is YAML's merge key"),
        ("=", "YAML tag '!!value' is not allowed"),
    ],
    ids=["int", "float", "bool", "date", "huge-int", "merge-as-value", "value-key"],
)
def test_scalars_that_cannot_be_built_are_refused_at_their_path(read, value, what):
    err = error(read, f"name: s\ntrain:\n  lr: {value}\n")
    assert err.field == "train.lr"
    assert what in err.message
    assert len(err.message) < 300


# -- aliases: counted by what they expand to, never expanded ---------------------------------------
def _bomb(levels: int, fan: int, where: str = "description") -> str:
    lines = ["lol0: &l0 [lol]"]
    for i in range(1, levels):
        lines.append(f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * fan)}]")
    anchors = "".join(f"  {line}\n" for line in lines)
    return f"x_anchors:\n{anchors}name: s\n{where}: *l{levels - 1}\n"


def test_an_alias_bomb_is_refused_without_being_expanded(read):
    err = error(read, _bomb(levels=9, fan=10))  # 10**9 values if expanded
    assert f"{MAX_EXPANDED_NODES:,}" in err.message and "MAX_EXPANDED_NODES" in err.message
    assert err.field.startswith("x_anchors.lol")
    assert len(err.render()) < 300  # nothing of the expansion is quoted


def test_a_bomb_hidden_in_merge_keys_is_refused(read):
    anchors = "a0: &a0 {k: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}\n"
    for i in range(1, 8):
        refs = ", ".join(f"*a{i - 1}" for _ in range(10))
        anchors += f"a{i}: &a{i} {{<<: *a{i - 1}, l{i}: [{refs}]}}\n"
    err = error(read, anchors + "name: s\n")
    assert "MAX_EXPANDED_NODES" in err.message


def test_a_small_alias_tree_within_the_limit_is_read(read):
    data = read(_bomb(levels=4, fan=10))  # 1,111 values once expanded
    assert len(data["description"]) == 10 and data["description"][0][0][0] == ["lol"]


@pytest.mark.parametrize(
    "content",
    ["name: s\ndescription: &r [*r]\n", "name: s\nx: &m {a: 1, self: *m}\n", "&t {name: s, x: *t}"],
    ids=["list", "mapping", "top-level"],
)
def test_a_recursive_alias_is_refused(read, content):
    err = error(read, content)
    assert "recursive alias" in err.message


def test_an_undefined_alias_is_a_located_yaml_error(read):
    err = error(read, SUITE.replace("- relu", "- *nope"))
    assert err.field == "line 6, column 7"
    assert err.message.startswith("not valid YAML: found undefined alias")


# -- depth and size: stopped while streaming events --------------------------------------------
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 200, 1000, 5000])
def test_deep_flow_lists_are_refused_at_their_path(read, depth):
    err = error(read, f"name: s\ndescription: {'[' * depth}1{']' * depth}\n")
    assert f"nested more than {MAX_DEPTH} levels deep" in err.message
    assert err.field.startswith("description")


def test_deep_flow_mappings_and_block_mappings_are_refused_at_their_path(read):
    err = error(read, "name: s\ndataset:\n  options: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n")
    assert err.field.startswith("dataset.options.a.a") and "MAX_DEPTH" in err.message
    block = "".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "v: 1\n"
    err = error(read, "name: s\n" + block)
    assert err.field.startswith("k0.k1.k2") and "MAX_DEPTH" in err.message
    assert len(err.field) <= 310


def test_nesting_at_the_limit_is_read(read):
    depth = MAX_DEPTH - 1  # plus the top-level mapping
    data = read(f"name: s\nx: {'[' * depth}1{']' * depth}\n")
    assert data["x"] == yaml.safe_load(f"{'[' * depth}1{']' * depth}")


def test_too_many_values_are_refused_at_the_path_reached(read, monkeypatch):
    monkeypatch.setattr(yamlsafe, "MAX_EVENTS", 2_000)  # the real one: the e2e test below
    err = error(read, "name: s\ngrid:\n  depth: [" + "3, " * 5_000 + "3]\n")
    assert (
        err.message
        == "more than 2,000 YAML values by line 3 (MAX_EVENTS; a suite has a few hundred)"
    )
    assert err.field == "grid.depth[1991]"
    err = error(read, "name: s\n" + "".join(f"k{i}: {i}\n" for i in range(5_000)))
    assert err.field == "k997" and " by line 999 " in err.message
    err = error(read, "name: s\n" + "".join(f"k{i}: {{a: {i}}}\n" for i in range(5_000)))
    assert err.field == "k399" and " by line 401 " in err.message  # at a key
    text = "name: s\nx: [1, 2, 3]\n" + "".join(f"k{i}: {{a: {i}}}\n" for i in range(5_000))
    err = error(read, text)
    assert err.field == "k397" and " by line 400 " in err.message  # at a mapping's end


def test_a_file_above_the_size_limit_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge.yaml"
    with path.open("wb") as f:  # sparse: costs no disk and is never read
        f.truncate(MAX_SUITE_BYTES + 1)
    with pytest.raises(UserInputError) as info:
        read_suite_yaml(path)
    assert info.value.source == str(path)
    assert "file too large" in info.value.message and "64 MiB" in info.value.message
    with pytest.raises(UserInputError, match="MAX_SUITE_BYTES"):
        parse_suite_yaml(b" " * (MAX_SUITE_BYTES + 1), "mem")


def test_a_directory_or_a_missing_file_is_an_input_error(tmp_path):
    for path in (tmp_path, tmp_path / "missing.yaml"):
        with pytest.raises(UserInputError, match="cannot read the file"):
            read_suite_yaml(path)


_MEMORY_PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("yamlsafe", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
from gradatlas.errors import UserInputError
try:
    mod.read_suite_yaml(__import__("pathlib").Path(sys.argv[2]))
    outcome = "read"
except UserInputError as exc:
    outcome = exc.render()
# VmHWM, not getrusage: Linux carries ru_maxrss across fork+exec, so a child of a big pytest
# process would report the parent's peak; VmHWM belongs to this process's own memory map.
hwm = next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:"))
print(json.dumps({"outcome": outcome, "max_rss_mb": int(hwm.split()[1]) / 1024}))
"""


def test_a_50mb_list_of_12m_values_is_refused_with_bounded_memory(tmp_path):
    """In a subprocess without torch, so its peak RSS is the reader's own."""
    path = tmp_path / "big.yaml"
    n = 50 * 1024 * 1024 // 4  # ~13M values
    with path.open("w") as f:
        f.write("name: s\ngrid:\n  depth: [")
        for _ in range(n // 1_000_000):
            f.write("3, " * 1_000_000)
        f.write("3]\n")
    assert path.stat().st_size > 30 * 1024 * 1024
    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, yamlsafe.__file__, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["outcome"].startswith(f"{path}: grid.depth[")
    assert "MAX_EVENTS" in report["outcome"]
    assert report["max_rss_mb"] < 1024


# -- bytes and characters ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "where", "byte"),
    [
        (b"name: s\ndescription: caf\xe9 au lait\n", "line 2, column 17", "0xe9"),
        (SUITE.encode() + b"# \xff\xfe\n", "line 10, column 3", "0xff"),
        (b"name: s\r\ngrid:\r\n  activation: [re\xed\xa0\x80lu]\r\n", "line 3, column 18", "0xed"),
        (b"name: s\n# \xc0\xaf\n", "line 2, column 3", "0xc0"),
        (b"name: \xe2\x82\xac\xe2\x82\n", "line 1, column 8", "0xe2"),  # euro sign, then cut
    ],
    ids=["latin-1", "comment", "surrogate-crlf", "overlong", "truncated"],
)
def test_invalid_utf8_names_line_column_and_byte(read, content, where, byte):
    err = error(read, content)
    assert err.message == f"not valid UTF-8 at {where} (byte {byte}): save the file as UTF-8"


@pytest.mark.parametrize(
    ("char", "name"),
    [("\x00", "U+0000 (NUL)"), ("\x07", "U+0007"), ("\x1b", "U+001B"), ("\x7f", "U+007F")],
)
def test_control_characters_are_refused_with_line_and_column(read, char, name):
    err = error(read, SUITE.replace("relu", f"re{char}lu"))
    assert err.message.startswith(f"control character {name} at line 6, column 9 ")


@pytest.mark.parametrize(
    "content",
    [
        bytes(range(256)) * 4,
        b"\x1f\x8b\x08\x00" + bytes(range(256)),
        b"\x7fELF\x02\x01\x01" + b"\x00" * 200,
        b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR",
    ],
    ids=["all-bytes", "gzip", "elf", "png"],
)
def test_binary_files_are_input_errors(read, content):
    error(read, content)


@pytest.mark.parametrize(
    ("encode", "bom"),
    [
        (lambda t: t.encode("utf-8"), b""),
        (lambda t: t.encode("utf-8-sig"), b"\xef\xbb\xbf"),
        (lambda t: t.encode("utf-16"), b""),
        (lambda t: b"\xfe\xff" + t.encode("utf-16-be"), b"\xfe\xff"),
        (lambda t: t.encode("utf-32"), b""),
    ],
    ids=["utf-8", "utf-8-bom", "utf-16-bom", "utf-16-be-bom", "utf-32-bom"],
)
def test_utf8_with_or_without_bom_and_utf16_32_with_bom_are_read(read, encode, bom):
    content = encode(SUITE)
    assert content.startswith(bom)
    assert read(content) == yaml.safe_load(SUITE)
    path = read.tmp_path / "suite.yaml"
    assert read_suite_yaml(path)[0] == SUITE  # the text without its BOM


def test_utf16_without_a_bom_is_refused(read):
    err = error(read, SUITE.encode("utf-16-le"))
    assert "control character U+0000 (NUL) at line 1, column 2" in err.message


@pytest.mark.parametrize("newline", ["\r\n", "\r"], ids=["crlf", "cr"])
def test_crlf_and_cr_line_endings_read_the_same(read, newline):
    assert read(SUITE.replace("\n", newline)) == yaml.safe_load(SUITE)


def test_control_character_positions_count_crlf_lines(read):
    err = error(read, "name: s\r\nx: 1\r\ny: a\x00\r\n")
    assert " at line 3, column 5 " in err.message


# -- documents and shapes ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content",
    ["", "   \n\n\t\n", "# nothing here\n# at all\n", "---\n", "--- # just a comment\n...\n"],
    ids=["empty", "whitespace", "comments", "empty-document", "empty-document-end"],
)
def test_an_empty_file_says_what_a_suite_is(read, content):
    err = error(read, content)
    assert err.message == EMPTY_MESSAGE and err.field is None


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        ("- quickstart\n- optimizers\n", "a list"),
        ("42\n", "an integer (42)"),
        ("quickstart\n", "a string ('quickstart')"),
        ("~\n", "null"),
        ("true\n", "a boolean (True)"),
        ("x" * 100_000 + "\n", "a string ('xxxx"),
    ],
)
def test_a_top_level_value_that_is_not_a_mapping_is_refused(read, content, kind):
    err = error(read, content)
    assert err.message.startswith(
        f"a suite must be a YAML mapping with at least 'name', not {kind}"
    )
    assert len(err.message) < 200


def test_several_documents_are_refused(read):
    err = error(read, SUITE + "---\n" + SUITE)
    assert err.field == "line 10, column 1" and "several YAML documents" in err.message


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ("name: x\ngrid: {depth: [1, 2\n", "line 3, column 1"),
        ("name: x\n grid:\n   depth: [1]\n  seeds: 2\n", "line 2, column 6"),
        ("name: x\ngrid:\n\tdepth: [1]\n", "line 3, column 1"),
        ('name: "x\n', "line 2, column 1"),
        ("name: x: y\n", "line 1, column 8"),
        (SUITE + "...\n%%%\n", "line 11, column 2"),
    ],
    ids=["unclosed-flow", "indentation", "tab", "quote", "stray-colon", "junk-after-end"],
)
def test_yaml_syntax_errors_are_located_by_line_and_column(read, content, field):
    err = error(read, content)
    assert err.message.startswith("not valid YAML: ")
    assert err.field == field


def test_user_values_in_messages_are_bounded(read):
    long_key = "k" * 100_000  # longer than a plain key may be: written as an explicit key
    err = error(read, f"name: s\n? {long_key}\n: 1\n? {long_key}\n: 2\n")
    assert err.message.startswith("duplicate key") and len(err.render()) < 400
    err = error(read, f"name: s\nx: !{'t' * 100_000} 1\n")
    assert len(err.render()) < 400
    err = error(read, f"name: s\nx: *{'a' * 100_000}\n")
    assert err.message.startswith("not valid YAML") and len(err.render()) < 700
