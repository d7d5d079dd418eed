"""Case files: schema validation, overrides, TOML round trip (ot_pde.config)."""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest

from ot_pde.config import (
    COMMON_SECTIONS,
    REQUIRED,
    Case,
    Field,
    Section,
    load_case,
    load_case_text,
    make_schema,
    parse_override,
    to_toml,
)
from ot_pde.errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SCHEMA = make_schema({
    "grid": Section({
        "n": Field("int", REQUIRED, minimum=2, resolution="inverse"),
        "nt": Field("int", 32, minimum=1),
        "lengths": Field("float_list", [1.0], exclusive_minimum=0),
    }),
    "source": Section(
        {"weight": Field("float", 1, minimum=0)},
        variants={
            "gaussian": {"mean": Field("float", 0.0), "std": Field("float", 1.0,
                                                                   exclusive_minimum=0)},
            "file": {"path": Field("path", must_exist=True), "dataset": Field("str", "density")},
        },
    ),
    "output": Section({
        "fields": Field("str_list", ["rho"], choices=("rho", "m")),
        "every": Field("int", 10, minimum=1),
    }),
})

CASE = """\
[case]
problem = "toy"
[grid]
n = 8
[source]
type = "gaussian"
mean = 0.5
"""
SRC = "cases/x.toml"


def schema_for(kind: str):
    if kind != "toy":
        raise InputError(f"unknown problem kind {kind!r}")
    return SCHEMA


def load(text: str = CASE, overrides=(), **kwargs) -> Case:
    kwargs.setdefault("source", SRC)
    return load_case_text(text, overrides=overrides, schema_for=schema_for, **kwargs)


def error(func, *args, **kwargs) -> InputError:
    with pytest.raises(InputError) as info:
        func(*args, **kwargs)
    return info.value


def check(spec: Field, value, base_dir="."):
    return spec.validate(value, source="f.toml", key="s.k", base_dir=base_dir)


def rejection(spec: Field, value, base_dir=".") -> str:
    """The message of rejecting ``value``, after checking the source and key prefix."""
    err = error(check, spec, value, base_dir)
    assert (err.source, err.key) == ("f.toml", "s.k")
    assert str(err).startswith("f.toml: s.k: ")
    return err.message


# ----------------------------------------------------------------------------- defaults


def test_defaults_fill_every_section_and_key():
    case = load()
    assert case.kind == "toy"
    assert list(case.data) == ["case", "run", "grid", "source", "output"]
    assert case.data["run"] == {"backend": "auto", "seed": 0, "max_wall_seconds": None,
                                "progress": "auto", "progress_seconds": 2.0}
    assert case.data["grid"] == {"n": 8, "nt": 32, "lengths": [1.0]}
    assert case.data["source"] == {"type": "gaussian", "weight": 1.0, "mean": 0.5, "std": 1.0}
    assert isinstance(case.get("source.weight"), float)  # int default promoted
    assert case.data["output"] == {"path": None, "every": 10, "xdmf": True, "fields": ["rho"]}
    assert case.get("grid.n") == 8 and case.section("case")["description"] == ""
    assert case.field("grid.n").resolution == "inverse"
    assert case.field("source.std").type == "float"
    with pytest.raises(KeyError):
        case.get("grid.m")
    with pytest.raises(KeyError):
        case.field("source.path")  # a key of the other variant


def test_defaults_are_not_shared_between_cases():
    first, second = load(), load()
    first.data["grid"]["lengths"].append(2.0)
    assert second.data["grid"]["lengths"] == [1.0]


# ----------------------------------------------------------------------------- field types


@pytest.mark.parametrize("type_, value, expected", [
    ("int", 3, 3),
    ("int", 4.0, 4),
    ("float", 2, 2.0),
    ("float", -0.5, -0.5),
    ("str", "", ""),
    ("bool", False, False),
    ("int_list", (1, 2), [1, 2]),
    ("float_list", [1, 2.5], [1.0, 2.5]),
    ("str_list", [], []),
    ("float_matrix", [[1, 0], [0, 1]], [[1.0, 0.0], [0.0, 1.0]]),
])
def test_types_accept_and_normalize(type_, value, expected):
    got = check(Field(type_), value)
    assert got == expected
    # Normalized, not merely equal: 2 -> 2.0 for floats, 4.0 -> 4 for ints, tuples -> lists.
    assert repr(got) == repr(expected)


@pytest.mark.parametrize("type_, value, message", [
    ("int", 2.5, "expected an integer, got 2.5 (float)"),
    ("int", True, "expected an integer, got True (bool)"),
    ("int", "3", "expected an integer, got '3' (str)"),
    ("int", math.inf, "expected an integer, got inf (float)"),
    ("float", "abc", "expected a float, got 'abc' (str)"),
    ("float", False, "expected a float, got False (bool)"),
    ("float", math.nan, "expected a float, got nan"),
    ("float", 10**400, "expected a float, got " + repr(10**400)[:77] + "..."),
    ("str", 3, "expected a string, got 3 (int)"),
    ("bool", 1, "expected a boolean (true or false), got 1 (int)"),
    ("bool", "true", "expected a boolean (true or false), got 'true' (str)"),
    ("path", 3, "expected a path (a string), got 3 (int)"),
    ("path", "", "expected a path (a string), got ''"),
    ("float_list", 1.0, "expected a list of floats, got 1.0 (float)"),
    ("int_list", [1, True], "expected a list of integers, got True (bool) at index 1"),
    ("str_list", ["a", 1], "expected a list of strings, got 1 (int) at index 1"),
    ("float_matrix", [1.0, 2.0],
     "expected a matrix (a list of equal-length lists of floats), got 1.0 (float) at row 0"),
    ("float_matrix", [[1.0], [1.0, 2.0]],
     "expected a matrix (a list of equal-length lists of floats), got rows of lengths 1, 2"),
    ("float_matrix", [[1.0], ["x"]],
     "expected a matrix (a list of equal-length lists of floats), got 'x' (str) at [1][0]"),
])
def test_types_reject(type_, value, message):
    assert rejection(Field(type_), value) == message


@pytest.mark.parametrize("spec, good, bad, message", [
    (Field("int", minimum=2), 2, 1, "expected an integer >= 2, got 1"),
    (Field("int", maximum=5), 5, 6, "expected an integer <= 5, got 6"),
    (Field("float", exclusive_minimum=0), 1e-300, 0.0, "expected a float > 0, got 0.0"),
    (Field("float", exclusive_maximum=1.0), 0.999, 1, "expected a float < 1, got 1"),
    (Field("float", minimum=0, exclusive_maximum=0.5), 0.0, 0.5,
     "expected a float >= 0 and < 0.5, got 0.5"),
    (Field("float_list", minimum=-1.0), [-1.0, 3.0], [0.0, -2.0],
     "expected a list of floats, each >= -1, got -2.0 at index 1"),
    (Field("float_matrix", exclusive_minimum=0), [[1.0]], [[1.0], [0.0]],
     "expected a matrix (a list of equal-length lists of floats), each > 0, got 0.0 at [1][0]"),
])
def test_ranges_inclusive_and_exclusive(spec, good, bad, message):
    assert check(spec, good) == good
    assert rejection(spec, bad) == message


def test_int_range_message_from_spec():
    assert rejection(Field("int", minimum=2), -3) == "expected an integer >= 2, got -3"
    assert rejection(Field("float", exclusive_minimum=0), "abc") == \
        "expected a float > 0, got 'abc' (str)"


def test_infinity_only_where_the_range_allows_it():
    assert rejection(Field("float", minimum=0), math.inf) == \
        "expected a float >= 0, got inf; infinite values are not allowed here"
    assert check(Field("float", minimum=0, maximum=math.inf), math.inf) == math.inf
    assert check(Field("float", minimum=-math.inf, maximum=0), -math.inf) == -math.inf
    assert rejection(Field("float", minimum=-math.inf, maximum=0), math.inf).startswith(
        "expected a float >= -inf and <= 0, got inf")
    assert rejection(Field("float", maximum=math.inf), math.nan) == \
        "expected a float <= inf, got nan"


def test_choices_with_did_you_mean():
    spec = Field("str", choices=["numpy", "numba", "cupy"])
    assert check(spec, "cupy") == "cupy"
    assert rejection(spec, "gpu") == "expected one of 'numpy', 'numba', 'cupy', got 'gpu'"
    assert rejection(spec, "nunpy") == \
        "expected one of 'numpy', 'numba', 'cupy', got 'nunpy'; did you mean 'numpy'?"
    assert rejection(spec, 1) == "expected one of 'numpy', 'numba', 'cupy', got 1 (int)"
    listed = Field("str_list", choices=("rho", "m"))
    assert check(listed, ["m", "rho"]) == ["m", "rho"]
    assert rejection(listed, ["rho", "p"]) == \
        "expected a list of strings, each one of 'rho', 'm', got 'p' at index 1"
    assert rejection(Field("int", choices=(1, 2, 4)), 3) == "expected one of 1, 2, 4, got 3"


def test_list_length():
    spec = Field("float_list", length=3)
    assert check(spec, [1, 2, 3]) == [1.0, 2.0, 3.0]
    assert rejection(spec, [1.0, 2.0]) == "expected a list of 3 floats, got 2 items"
    matrix = Field("float_matrix", length=2)
    assert rejection(matrix, [[1.0, 2.0]]) == \
        "expected a matrix (a list of 2 equal-length lists of floats), got 1 items"


def test_path_resolves_against_base_dir_and_must_exist(tmp_path):
    (tmp_path / "data.h5").write_bytes(b"")
    assert check(Field("path"), "sub/out.h5", tmp_path) == str(tmp_path / "sub" / "out.h5")
    assert check(Field("path"), "/abs/out.h5", tmp_path) == "/abs/out.h5"
    assert check(Field("path", must_exist=True), "data.h5", tmp_path) == str(tmp_path / "data.h5")
    missing = tmp_path / "nope.h5"
    assert rejection(Field("path", must_exist=True), "nope.h5", tmp_path) == \
        f"file not found: {missing}"


@pytest.mark.parametrize("kwargs", [
    {"type": "complex"},
    {"type": "int", "default": 1.5},
    {"type": "int", "default": 1, "minimum": 2},
    {"type": "str", "minimum": 0},
    {"type": "float", "choices": (1.0,)},
    {"type": "int", "choices": (1, 2), "maximum": 3},
    {"type": "int", "length": 2},
    {"type": "str", "must_exist": True},
    {"type": "int", "resolution": "log"},
    {"type": "path", "default": 3},
])
def test_schema_mistakes_are_value_errors(kwargs):
    with pytest.raises(ValueError):
        Field(**kwargs)


# ----------------------------------------------------------------------------- sections


def test_unknown_key_with_did_you_mean():
    err = error(load, CASE.replace("n = 8", "nn = 8"))
    assert (err.source, err.key) == (SRC, "grid.nn")
    assert str(err) == "cases/x.toml: grid.nn: unknown key; did you mean 'n'? " \
                       "(known keys: n, nt, lengths)"


def test_unknown_key_without_close_match():
    err = error(load, CASE + "[run]\nzzz = 1\n")
    assert str(err) == ("cases/x.toml: run.zzz: unknown key (known keys: backend, seed, "
                        "max_wall_seconds, progress, progress_seconds)")


def test_unknown_section_with_did_you_mean():
    err = error(load, CASE.replace("[grid]", "[gird]"))
    assert (err.source, err.key) == (SRC, "gird")
    assert err.message == ("unknown section; did you mean 'grid'? "
                           "(known sections: case, run, grid, source, output)")


def test_key_outside_any_section():
    err = error(load, "seed = 3\n" + CASE)
    assert (err.source, err.key) == (SRC, "seed")
    assert err.message.startswith("key outside any [section]; did you mean 'run.seed'?")


def test_section_that_is_not_a_table():
    err = error(load, "grid = 3\n" + CASE.replace("[grid]\nn = 8\n", ""))
    assert str(err) == "cases/x.toml: grid: expected a table [grid], got 3 (int)"


def test_missing_required_key():
    err = error(load, CASE.replace("n = 8\n", ""))
    assert str(err) == "cases/x.toml: grid.n: required key is missing"


def test_bad_value_in_file_names_file_and_key():
    err = error(load, CASE.replace("n = 8", "n = 1"))
    assert str(err) == "cases/x.toml: grid.n: expected an integer >= 2, got 1"


def test_variants_allow_their_own_keys(tmp_path):
    (tmp_path / "d.h5").write_bytes(b"")
    text = CASE.replace('type = "gaussian"\nmean = 0.5', 'type = "file"\npath = "d.h5"')
    case = load(text, base_dir=tmp_path)
    assert case.section("source") == {"type": "file", "weight": 1.0,
                                      "path": str(tmp_path / "d.h5"), "dataset": "density"}


def test_variant_rejects_keys_of_other_variant():
    err = error(load, CASE + 'dataset = "rho"\n')
    assert (err.source, err.key) == (SRC, "source.dataset")
    assert err.message == ("unknown key for type = 'gaussian'; it belongs to type = 'file' "
                           "(known keys: type, weight, mean, std)")
    err = error(load, CASE + "meen = 1.0\n")
    assert err.message == ("unknown key for type = 'gaussian'; did you mean 'mean'? "
                           "(known keys: type, weight, mean, std)")


def test_variant_discriminator_required_and_checked():
    err = error(load, CASE.replace('type = "gaussian"\n', ""))
    assert str(err) == "cases/x.toml: source.type: required key is missing"
    err = error(load, CASE.replace('"gaussian"', '"gauss"'))
    assert str(err) == ("cases/x.toml: source.type: expected one of 'gaussian', 'file', "
                        "got 'gauss'; did you mean 'gaussian'?")


def test_default_variant():
    section = Section({}, variants={"a": {"x": Field("int", 1)}, "b": {}}, default_variant="a")
    assert section.validate({}, name="s", source="f", base_dir=".") == {"type": "a", "x": 1}
    assert section.validate({"type": "b"}, name="s", source="f", base_dir=".") == {"type": "b"}
    with pytest.raises(ValueError):
        Section({}, variants={"a": {}}, default_variant="c")
    with pytest.raises(ValueError):
        Section({"type": Field("str")}, variants={"a": {}})


# ----------------------------------------------------------------------------- overrides


@pytest.mark.parametrize("text, expected", [
    ("grid.n=64", ("grid", "n", 64)),
    (" grid.n = 64 ", ("grid", "n", 64)),
    ("solver.tau=1e-3", ("solver", "tau", 1e-3)),
    ("run.backend=numpy", ("run", "backend", "numpy")),
    ('run.backend="numpy"', ("run", "backend", "numpy")),
    ("run.backend='numba'", ("run", "backend", "numba")),
    ("output.path=out/a b.h5", ("output", "path", "out/a b.h5")),
    ("output.xdmf=false", ("output", "xdmf", False)),
    ("grid.lengths=[1, 2.5]", ("grid", "lengths", [1, 2.5])),
    ("source.cov=[[1, 0], [0, 1]]", ("source", "cov", [[1, 0], [0, 1]])),
    ("run.max_wall_seconds=inf", ("run", "max_wall_seconds", math.inf)),
    ("case.description=a=b", ("case", "description", "a=b")),
    ("case.description=", ("case", "description", "")),
    ("case.description=1\nx = 2", ("case", "description", "1\nx = 2")),
])
def test_parse_override(text, expected):
    assert parse_override(text) == expected


@pytest.mark.parametrize("text", ["grid.n", "n=3", ".n=3", "grid.=3", "=3", ""])
def test_parse_override_malformed(text):
    err = error(parse_override, text)
    assert (err.source, err.key, err.message) == ("--set", text, "expected sec.key=value")


def test_overrides_apply_and_validate():
    case = load(overrides=["grid.n=64", "run.backend=numpy", 'case.description="a b"',
                           "grid.lengths=[1, 2]", "source.std=0.25"])
    assert case.get("grid.n") == 64 and case.get("run.backend") == "numpy"
    assert case.get("case.description") == "a b"
    assert case.get("grid.lengths") == [1.0, 2.0]
    assert case.get("source.std") == 0.25
    assert case.raw["grid"]["n"] == 64
    assert set(case.overridden) == {"grid.n", "run.backend", "case.description",
                                    "grid.lengths", "source.std"}


@pytest.mark.parametrize("override, key, message", [
    ("grid.n=-3", "grid.n", "expected an integer >= 2, got -3"),
    ("run.backend=gpu", "run.backend", "expected one of 'auto', 'numpy', 'numba', 'cupy', "
                                       "got 'gpu'"),
    ("grid.lengths=[1, 'a']", "grid.lengths", "expected a list of floats, each > 0, "
                                              "got 'a' (str) at index 1"),
    ("grid.nn=3", "grid.nn", "unknown key; did you mean 'n'? (known keys: n, nt, lengths)"),
    ("gird.n=3", "gird", "unknown section; did you mean 'grid'? "
                         "(known sections: case, run, grid, source, output)"),
    ("source.path=x.h5", "source.path", "unknown key for type = 'gaussian'; it belongs to "
                                        "type = 'file' (known keys: type, weight, mean, std)"),
    ("case.problem=other", "case.problem", "the problem kind cannot be overridden; "
                                           "edit the case file"),
])
def test_override_errors_name_set(override, key, message):
    err = error(load, overrides=[override])
    assert (err.source, err.key, err.message) == ("--set", key, message)
    assert str(err) == f"--set: {key}: {message}"


def test_override_paths_resolve_against_cwd(tmp_path, monkeypatch):
    (tmp_path / "d.h5").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    case = load(base_dir="/elsewhere",
                overrides=["output.path=out.h5", "source.type=file", "source.path=d.h5"])
    assert case.get("output.path") == str(tmp_path / "out.h5")
    # The Gaussian keys of the file are dropped when the override switches the variant.
    assert case.section("source") == {"type": "file", "weight": 1.0,
                                      "path": str(tmp_path / "d.h5"), "dataset": "density"}
    err = error(load, overrides=["source.type=file", "source.path=missing.h5"])
    assert str(err) == f"--set: source.path: file not found: {tmp_path / 'missing.h5'}"


def test_with_overrides_keeps_earlier_overrides(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    case = load(base_dir="/elsewhere", overrides=["output.path=out.h5"])
    monkeypatch.chdir("/")
    again = case.with_overrides(["grid.n=16"])
    assert again.get("grid.n") == 16 and case.get("grid.n") == 8
    assert again.get("output.path") == str(tmp_path / "out.h5")
    err = error(case.with_overrides, ["grid.nt=0"])
    assert str(err) == "--set: grid.nt: expected an integer >= 1, got 0"


# ----------------------------------------------------------------------------- TOML output


@pytest.mark.parametrize("data", [
    {"a": {"s": 'q"uote\\back\tslash\nnew\x00\x7f é ∞', "i": -3, "big": 2**62, "t": True}},
    {"a": {"f": 0.1, "g": -1e-300, "h": 1e300, "inf": math.inf, "ninf": -math.inf, "z": -0.0}},
    {"a": {"l": [1.5, 2.0], "m": [[1.0, 0.0], [0.0, 1.0]], "e": [], "s": ["x", "y z"]}},
    {"empty": {}, "quoted key": {"a.b": 1, "": 2}, "n": {"sub": {"k": 1}}},
])
def test_to_toml_round_trip(data):
    assert tomllib.loads(to_toml(data)) == data


def test_to_toml_leaves_out_none_and_rejects_other_types():
    assert tomllib.loads(to_toml({"a": {"x": None, "y": 1}})) == {"a": {"y": 1}}
    with pytest.raises(TypeError):
        to_toml({"a": {"x": [None]}})
    with pytest.raises(TypeError):
        to_toml({"a": {"x": [{"t": 1}]}})


def test_case_to_toml_reloads_to_same_data(tmp_path):
    case = load(overrides=["output.path=out.h5", "run.max_wall_seconds=60"])
    text = case.to_toml()
    assert "max_wall_seconds = 60.0" in text and "[output]" in text
    assert text.index("[run]") < text.index("[grid]") < text.index("[output]")
    again = load_case_text(text, schema_for=schema_for, base_dir=tmp_path)
    assert again.data == case.data


# ----------------------------------------------------------------------------- files


def test_load_case_resolves_paths_against_the_file(tmp_path):
    folder = tmp_path / "cases"
    folder.mkdir()
    (folder / "d.h5").write_bytes(b"")
    (folder / "x.toml").write_text(CASE.replace('type = "gaussian"\nmean = 0.5',
                                                'type = "file"\npath = "d.h5"'))
    case = load_case(folder / "x.toml", schema_for=schema_for)
    assert case.source == str(folder / "x.toml") and case.base_dir == folder
    assert case.get("source.path") == str(folder / "d.h5")


def test_load_case_relative_path_named_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.mkdir("cases")
    Path("cases/x.toml").write_text(CASE.replace("n = 8", "n = 0"))
    err = error(load_case, "cases/x.toml", schema_for=schema_for)
    assert str(err) == "cases/x.toml: grid.n: expected an integer >= 2, got 0"


def test_missing_case_file(tmp_path):
    path = tmp_path / "nope.toml"
    err = error(load_case, path, schema_for=schema_for)
    assert (err.source, err.key) == (str(path), None)
    assert str(err) == f"{path}: case file not found"


def test_invalid_toml(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[case]\nproblem = \n")
    err = error(load_case, path, schema_for=schema_for)
    assert (err.source, err.key) == (str(path), None)
    with pytest.raises(tomllib.TOMLDecodeError) as info:
        tomllib.loads("[case]\nproblem = \n")
    assert err.message == f"invalid TOML: {info.value}"
    path.write_bytes(b"[case]\nproblem = \"\xff\"\n")
    assert error(load_case, path, schema_for=schema_for).message.startswith(
        "invalid TOML: not UTF-8 text")


def test_case_file_that_is_a_directory(tmp_path):
    err = error(load_case, tmp_path, schema_for=schema_for)
    assert err.source == str(tmp_path)
    assert err.message.startswith("cannot read case file: ")


def test_problem_kind_missing_unknown_or_mistyped():
    err = error(load, CASE.replace('problem = "toy"\n', ""))
    assert str(err) == "cases/x.toml: case.problem: required key is missing"
    err = error(load, CASE.replace('"toy"', '"tyo"'))
    assert str(err) == "cases/x.toml: case.problem: unknown problem kind 'tyo'"
    err = error(load, CASE.replace('"toy"', "3"))
    assert str(err) == "cases/x.toml: case.problem: expected a string, got 3 (int)"
    err = error(load, "case = 1\n")
    assert str(err) == "cases/x.toml: case: expected a table [case], got 1 (int)"


# ----------------------------------------------------------------------------- make_schema


def test_make_schema_merges_common_sections():
    schema = make_schema({
        "solver": Section({"iterations": Field("int", 10, minimum=1)}),
        "output": Section({"fields": Field("str_list", ["rho"]),
                           "every": Field("int", 5, minimum=1)}, doc="kind output"),
    })
    assert list(schema.sections) == ["case", "run", "solver", "output"]
    output = schema.sections["output"]
    assert list(output.fields) == ["path", "every", "xdmf", "fields"]
    assert output.fields["every"].default == 5 and output.doc == "kind output"
    assert schema.sections["run"] is COMMON_SECTIONS["run"]
    # The common sections themselves are untouched.
    assert COMMON_SECTIONS["output"].fields["every"].default == 100
    assert "fields" not in COMMON_SECTIONS["output"].fields
