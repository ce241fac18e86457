"""README's configuration table is generated from config.schema.yaml and must not drift."""

import difflib
from pathlib import Path

import pytest
import yaml

from radstudy import configdoc
from radstudy.configdoc import END, START, config_table, readme_with_table

REPO = Path(__file__).resolve().parents[2]

SCHEMA = {
    "type": "object",
    "properties": {
        "seed": {"type": "integer", "default": 42, "description": "master seed"},
        "cohort": {
            "type": "object",
            "default": {},
            "properties": {
                "sequences": {"type": "array", "default": ["T1", "T2"], "description": "sequences"},
                "features_table": {"type": "string", "default": "", "description": "feature table"},
                "repeats": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "default": {"R1r": "R1"},
                    "description": "repeat -> original",
                },
                "modality": {"enum": ["MRI", "CT"], "default": "MRI", "description": "modality"},
            },
        },
        "preprocess": {
            "type": "object",
            "properties": {
                "n4": {
                    "type": "object",
                    "properties": {
                        "shrink_factor": {"type": "integer", "default": 2, "description": "shrink"},
                        "enabled": {"type": "boolean", "default": True, "description": "on"},
                    },
                },
                "spacing": {
                    "oneOf": [{"type": "array", "items": {"type": "number"}}, {"const": "median"}],
                    "default": [1.0, 1.0, 1.0],
                    "description": "target spacing",
                },
                "normalization": {"enum": ["zscore", "nyul", "none"], "default": "zscore"},
            },
        },
        "endpoints": {
            "type": "object",
            "default": {},
            "description": "endpoint name -> {type, column}",
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "type": {"enum": ["binary", "survival"]},
                    "column": {"type": "string", "description": "label column"},
                },
            },
        },
        "models": {
            "type": "object",
            "default": {},
            "description": "endpoint -> model name -> {groups}",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "properties": {
                        "groups": {
                            "type": "array",
                            "items": {"enum": ["radiomics", "clinical"]},
                            "description": "feature groups",
                        },
                        "smote": {"type": "boolean", "default": False, "description": "oversample"},
                    },
                },
            },
        },
        "selection": {
            "type": "object",
            "properties": {"univariate": {"type": "object", "description": "{test: ttest|mwu}"}},
        },
    },
}


def _rows(table: str) -> dict[str, tuple[str, str]]:
    """Key (without backticks) -> (default cell, meaning cell) of a generated table."""
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        assert len(cells) == 3, line
        rows[cells[0].strip("`")] = (cells[1], cells[2])
    return rows


def test_readme_table_matches_schema():
    """The drift test: README.md's table is exactly what the schema generates."""
    schema = yaml.safe_load((REPO / "config.schema.yaml").read_text(encoding="utf-8"))
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    expected = readme_with_table(readme, config_table(schema))
    if expected != readme:
        diff = difflib.unified_diff(
            readme.splitlines(), expected.splitlines(), "README.md", "generated", lineterm="", n=0
        )
        shown = "\n".join(list(diff)[:30])
        pytest.fail(
            "README.md's configuration table is out of date with config.schema.yaml: "
            f"run `make docs`\n{shown}"
        )


def test_header_and_schema_order():
    table = config_table(SCHEMA)
    lines = table.splitlines()
    assert lines[:2] == ["| key | default | meaning |", "|---|---|---|"]
    assert list(_rows(table)) == [
        "seed",
        "cohort.sequences",
        "cohort.features_table",
        "cohort.repeats",
        "cohort.modality",
        "preprocess.n4.shrink_factor",
        "preprocess.n4.enabled",
        "preprocess.spacing",
        "preprocess.normalization",
        "endpoints.{endpoint}",
        "endpoints.{endpoint}.type",
        "endpoints.{endpoint}.column",
        "models.{endpoint}.{model}",
        "models.{endpoint}.{model}.groups",
        "models.{endpoint}.{model}.smote",
        "selection.univariate",
    ]
    assert config_table(SCHEMA) == table  # deterministic
    assert not table.endswith("\n")


def test_defaults_formatting():
    rows = _rows(config_table(SCHEMA))
    assert rows["seed"][0] == "`42`"
    assert rows["cohort.sequences"][0] == "`[T1, T2]`"
    assert rows["cohort.features_table"][0] == '`""`'
    assert rows["cohort.repeats"][0] == "`{R1r: R1}`"
    assert rows["preprocess.n4.enabled"][0] == "`true`"
    assert rows["preprocess.spacing"][0] == "`[1.0, 1.0, 1.0]`"
    assert rows["models.{endpoint}.{model}.smote"][0] == "`false`"
    assert rows["endpoints.{endpoint}.type"][0] == ""  # no default: empty cell
    assert rows["selection.univariate"][0] == ""


def test_format_default_scalars():
    assert configdoc.format_default(None) == "null"
    assert configdoc.format_default(0.001) == "0.001"
    assert configdoc.format_default("ICC(A,1)") == "ICC(A,1)"
    assert configdoc.format_default({}) == "{}"
    assert configdoc.format_default([]) == "[]"
    assert configdoc.format_default(["", "a"]) == '["", a]'


def test_hints_for_choices():
    rows = _rows(config_table(SCHEMA))
    assert rows["cohort.modality"][1] == "modality (one of: `MRI`, `CT`)"
    assert rows["preprocess.normalization"][1] == "one of: `zscore`, `nyul`, `none`"
    assert rows["preprocess.spacing"][1] == "target spacing (list of number or `median`)"
    assert rows["models.{endpoint}.{model}.groups"][1] == (
        "feature groups (list of: `radiomics`, `clinical`)"
    )
    assert rows["endpoints.{endpoint}.type"][1] == "one of: `binary`, `survival`"
    # a plain documented key gets no type hint
    assert rows["preprocess.n4.shrink_factor"][1] == "shrink"


def test_maps():
    rows = _rows(config_table(SCHEMA))
    assert rows["endpoints.{endpoint}"] == ("`{}`", "endpoint name -> {type, column}")
    assert rows["models.{endpoint}.{model}"] == ("`{}`", "endpoint -> model name -> {groups}")
    assert rows["endpoints.{endpoint}.column"][1] == "label column"
    # a map of plain values is one leaf, not expanded
    assert "cohort.repeats.{name}" not in rows
    assert rows["cohort.repeats"][1] == "repeat -> original"


def test_map_placeholder_from_property_names_title_or_fallback():
    schema = {
        "properties": {
            "a": {
                "type": "object",
                "propertyNames": {"title": "center"},
                "additionalProperties": {
                    "type": "object",
                    "properties": {"n": {"type": "integer"}},
                },
            },
            "b": {
                "type": "object",
                "description": "whatever",
                "additionalProperties": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "properties": {"x": {"type": "string", "description": "x"}},
                    },
                },
            },
        }
    }
    rows = _rows(config_table(schema))
    assert "a.{center}.n" in rows
    assert rows["a.{center}.n"] == ("", "integer")
    assert "b.{name}.{name2}.x" in rows


def test_pipes_escaped():
    table = config_table(SCHEMA)
    line = next(ln for ln in table.splitlines() if ln.startswith("| `selection.univariate`"))
    assert line == r"| `selection.univariate` |  | {test: ttest\|mwu} |"
    schema = {"properties": {"k": {"enum": ["a|b", "c"], "default": "a|b"}}}
    assert config_table(schema).splitlines()[2] == r"| `k` | `a\|b` | one of: `a\|b`, `c` |"


def test_multiline_description_on_one_line():
    schema = {"properties": {"k": {"type": "string", "description": "two\nlines  here"}}}
    assert config_table(schema).splitlines()[2] == "| `k` |  | two lines here |"


def test_local_refs_followed():
    schema = {
        "$defs": {"flag": {"type": "boolean", "default": True, "description": "a flag"}},
        "properties": {"k": {"$ref": "#/$defs/flag"}},
    }
    assert config_table(schema).splitlines()[2] == "| `k` | `true` | a flag |"


def test_readme_with_table_replaces_between_markers():
    readme = f"# t\n\nbefore\n\n{START}\nold table\n{END}\n\nafter\n"
    out = readme_with_table(readme, "| new |")
    assert out == f"# t\n\nbefore\n\n{START}\n| new |\n{END}\n\nafter\n"
    assert readme_with_table(out, "| new |") == out  # idempotent


@pytest.mark.parametrize(
    "readme",
    [
        "# no markers\n",
        f"# only start\n{START}\n",
        f"# only end\n{END}\n",
        f"{END}\n{START}\n",
        f"{START}\n{END}\n{START}\n{END}\n",
    ],
)
def test_readme_with_table_errors_without_markers(readme):
    with pytest.raises(ValueError, match="config-table"):
        readme_with_table(readme, "| t |")


def test_main_check_and_write(tmp_path, capsys):
    schema = tmp_path / "schema.yaml"
    schema.write_text(yaml.safe_dump(SCHEMA, sort_keys=False))
    readme = tmp_path / "README.md"
    readme.write_text(f"x\n{START}\nstale\n{END}\ny\n")
    args = ["--schema", str(schema), "--readme", str(readme)]

    assert configdoc.main([*args, "--check"]) == 1
    err = capsys.readouterr().err
    assert "make docs" in err and err.count("\n") == 1
    assert "stale" in readme.read_text()

    assert configdoc.main(args) == 0
    assert readme.read_text() == readme_with_table(f"x\n{START}\n{END}\ny\n", config_table(SCHEMA))
    assert configdoc.main([*args, "--check"]) == 0

    readme.write_text("no markers\n")
    assert configdoc.main(args) == 2


def test_repeated_ref_listed_once():
    block = {
        "type": "object",
        "description": "steps",
        "properties": {"variance": {"type": "number", "default": 0.0, "description": "v"}},
    }
    schema = {
        "$defs": {"selection": block},
        "properties": {
            "selection": {"$ref": "#/$defs/selection", "default": {"variance": 1.0e-8}},
            "model": {
                "type": "object",
                "properties": {"selection": {"$ref": "#/$defs/selection", "description": "own"}},
            },
        },
    }
    rows = _rows(config_table(schema))
    assert rows == {
        "selection": ("`{variance: 1.0e-08}`", "steps"),
        "selection.variance": ("`0.0`", "v"),
        "model.selection": ("", "own (same keys as `selection`)"),
    }
