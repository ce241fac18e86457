"""The study config: unknown keys, schema errors and cross-key checks as one-line errors.

The schema (config.schema.yaml) is the one place where defaults live; Snakemake's
``validate(..., set_default=True)`` fills them in. Before that, :func:`check_config`
turns what jsonschema would report as a page of text into one line that names the
key, where it is, and what to do: an unknown key gets the nearest valid key
(``config key evaluation.bootsrap is not known; did you mean bootstrap?``). After
the defaults are in, :func:`check_semantics` checks what a schema cannot express
(a model for an endpoint that does not exist, a reference reader that is not a
reader, a deep-learning endpoint that is not an endpoint, ...).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from radstudy.errors import ConfigError

# the workflow's schema (scripts/radstudy/ -> the repository root)
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config.schema.yaml"


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    return yaml.safe_load(Path(path).read_text())


def with_defaults(config: dict, schema: dict | None = None) -> dict:
    """A copy of ``config`` with the schema's defaults filled in, the way Snakemake's
    ``validate(..., set_default=True)`` fills them (for code and tests that build a
    config without the workflow). Validation errors are not raised here."""
    from jsonschema import validators

    schema = load_schema() if schema is None else schema
    base = Draft202012Validator
    props = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, sub):
        if isinstance(instance, dict):
            for key, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(key, json.loads(json.dumps(subschema["default"])))
        yield from props(validator, properties, instance, sub)

    filler = validators.extend(base, {"properties": set_defaults})
    out = fill_models(unshare(config), schema)
    registry = Registry().with_resource("", Resource.from_contents(schema))
    for _ in filler(schema, registry=registry).iter_errors(out):
        pass
    return out


def fill_models(config: dict, schema: dict | None = None) -> dict:
    """``config`` with the default models ($defs.default_models of the schema) for
    every endpoint that config key models does not name, and the shorthand
    ``models: {endpoint: auto}`` written out as one searched model named auto
    ($defs.auto_model) (in place; returned)."""
    schema = load_schema() if schema is None else schema
    defaults = schema["$defs"]["default_models"]["default"]
    auto = schema["$defs"]["auto_model"]["default"]
    models = config.setdefault("models", {})
    for name, ep in sorted((config.get("endpoints") or {}).items()):
        if name not in models and isinstance(ep, dict) and ep.get("type") in defaults:
            models[name] = json.loads(json.dumps(defaults[ep["type"]]))
    for name in sorted(models):
        if models[name] == "auto":
            models[name] = {"auto": json.loads(json.dumps(auto))}
    return config


def _resolve(schema: dict, root: dict) -> dict:
    """Follow a local ``$ref`` (``#/$defs/name``), keeping the sibling keys."""
    while isinstance(schema, dict) and "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"only local $refs are supported, not {ref!r}")
        node = root
        for part in ref[2:].split("/"):
            node = node[part]
        schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _where(path: tuple) -> str:
    return ".".join(str(p) for p in path) if path else "the top level"


def unknown_keys(config: dict, schema: dict) -> Iterator[str]:
    """One message per key the schema does not know, with the nearest valid key."""

    def walk(node, sub: dict, path: tuple) -> Iterator[str]:
        sub = _resolve(sub, schema)
        kind = sub.get("type")
        kinds = kind if isinstance(kind, list) else [kind]  # e.g. [object, string]
        if not isinstance(node, dict) or not {"object", None} & set(kinds):
            return
        props = sub.get("properties", {})
        extra = sub.get("additionalProperties", True)
        for key, value in node.items():
            if key in props:
                yield from walk(value, props[key], (*path, key))
            elif extra is False:
                near = difflib.get_close_matches(str(key), list(props), n=1, cutoff=0.6)
                hint = f"; did you mean {near[0]}?" if near else ""
                valid = ", ".join(props)
                yield (
                    f"config key {_where((*path, key))} is not known{hint} "
                    f"(valid keys in {_where(path)}: {valid})"
                )
            elif isinstance(extra, dict):
                yield from walk(value, extra, (*path, key))

    yield from walk(config, schema, ())


def _one_line(err) -> str:
    path = tuple(err.absolute_path)
    where = f"config key {_where(path)}" if path else "config"
    if err.validator == "required":
        return f"{where}: {err.message} (see config.schema.yaml)"
    if err.validator in ("oneOf", "anyOf"):
        return f"{where}: {err.instance!r} is not valid ({err.schema.get('description', '')})"
    return f"{where}: {err.message}"


def _raise(problems: list[str]) -> None:
    """ConfigError with the first problem as its one line (and a count of the rest)."""
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(problems[0] + more + "".join("\n" + p for p in problems[1:10]))


def _follows_bad_value(err, schema: dict, bad: set[tuple]) -> bool:
    """An error of an if/then/else branch whose ``if`` key holds a bad value itself
    (``endpoints.x.type: ordinal`` sends the schema to the survival branch, which then
    asks for time and event): a consequence of that value, not a problem of its own."""
    parts = list(err.schema_path)
    for i, part in enumerate(parts):
        if part not in ("then", "else"):
            continue
        node = schema
        try:
            for step in parts[:i]:
                node = node[step]
        except (KeyError, IndexError, TypeError):  # through a $ref: not followed
            return False
        keys = ((node.get("if") or {}).get("properties") or {}) if isinstance(node, dict) else {}
        if any((*err.absolute_path, key) in bad for key in keys):
            return True
    return False


def check_config(config: dict, schema: dict) -> None:
    """Raise :class:`ConfigError` (one line first) on unknown keys or schema errors."""
    problems = list(unknown_keys(config, schema))
    if not problems:
        registry = Registry().with_resource("", Resource.from_contents(schema))
        validator = Draft202012Validator(schema, registry=registry)
        errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
        bad = {tuple(e.absolute_path) for e in errors if e.validator in ("enum", "const")}
        errors = [e for e in errors if not _follows_bad_value(e, schema, bad)]
        problems = [_one_line(e) for e in errors]
    _raise(problems)


def unshare(config: dict) -> dict:
    """A deep copy without shared sub-dicts (jsonschema's default filling inserts the
    schema's own default objects, so two map entries can hold the same dict)."""
    return json.loads(json.dumps(config))


def segmentation_methods(seg: dict) -> list[str]:
    """segmentation.method as a list: ``readers`` is none, a name is itself, a list is
    itself (``[slic_fcm, nnunet]``: both pseudo-readers)."""
    method = seg["method"]
    if isinstance(method, str):
        return [] if method == "readers" else [method]
    return [m for m in method if m != "readers"]


def segmentation_label(seg: dict) -> str:
    """segmentation.method in words, for the report: 'reader masks + SLIC superpixels +
    fuzzy c-means + nnU-Net (trained in the study: 2d, nnUNetTrainer_5epochs, folds all)'."""
    words = ["reader masks"]
    for m in segmentation_methods(seg):
        if m == "slic_fcm":
            words.append("SLIC superpixels + fuzzy c-means")
        elif seg.get("nnunet_model"):
            words.append(f"nnU-Net (ready model {seg['nnunet_model']})")
        elif nnunet_trains(seg):
            folds = ", ".join(str(f) for f in seg.get("nnunet_folds", []))
            words.append(
                f"nnU-Net (trained in the study on the training cases: "
                f"{seg.get('nnunet_configuration')}, {seg.get('nnunet_trainer')}, folds {folds})"
            )
    return " + ".join(words)


def nnunet_trains(seg: dict) -> bool:
    """nnU-Net is trained inside the study: method nnunet, no ready model, training on."""
    return (
        "nnunet" in segmentation_methods(seg)
        and not seg.get("nnunet_model")
        and seg.get("nnunet_train", True)
    )


def pseudo_readers(seg: dict) -> list[str]:
    """Pseudo-readers of the segmentation block: ``slic`` (slic_fcm) and ``nnunet``
    (a ready model, or one trained in the study; with nnunet_train false and no
    nnunet_model, nnU-Net is skipped)."""
    out = []
    for method in segmentation_methods(seg):
        if method == "slic_fcm":
            out.append("slic")
        elif method == "nnunet" and (seg.get("nnunet_model") or seg.get("nnunet_train", True)):
            out.append("nnunet")
    return out


def check_semantics(config: dict) -> None:
    """Cross-key checks on a config with its defaults filled in (ConfigError)."""
    c = config["cohort"]
    readers = list(c["readers"])
    problems: list[str] = []
    pseudo = pseudo_readers(config["segmentation"])
    if nnunet_trains(config["segmentation"]) and not readers:
        problems.append(
            "config key segmentation.method: nnunet is trained on cohort.reference_reader's "
            "masks: name cohort.readers, or give segmentation.nnunet_model"
        )
    if c["features_table"] and (c["sequences"] or readers):
        problems.append(
            "config key cohort.features_table is set: set cohort.sequences and "
            "cohort.readers to [] (the features come from the table, not from images)"
        )
    if not c["features_table"] and not c["sequences"]:
        problems.append(
            "config: no features to compute: name cohort.sequences (and cohort.readers) "
            "for images, or cohort.features_table for a feature table"
        )
    if readers and c["reference_reader"] not in readers:
        problems.append(
            f"config key cohort.reference_reader: {c['reference_reader']!r} is not one of "
            f"cohort.readers ({', '.join(readers)})"
        )
    sequences = list(c["sequences"])
    for seq in c.get("series") or {}:
        if seq not in sequences:
            problems.append(
                f"config key cohort.series.{seq}: {seq!r} is not one of cohort.sequences "
                f"({', '.join(sequences) or 'none'})"
            )
    masks = readers + (["organ"] if c["organ_mask_column"] else [])
    for name in c.get("roi") or {}:
        if name == "organ" and name not in masks:
            problems.append(
                "config key cohort.roi.organ: no organ mask (cohort.organ_mask_column is empty)"
            )
        elif name not in masks:
            what = "cohort.readers or organ" if "organ" in masks else "cohort.readers"
            problems.append(
                f"config key cohort.roi.{name}: {name!r} is not one of {what} "
                f"({', '.join(masks) or 'none'})"
            )
    if config["segmentation"].get("export", "none") != "none" and not pseudo:
        problems.append(
            "config key segmentation.export: exports the pseudo-readers' masks; set "
            "segmentation.method to slic_fcm or nnunet"
        )
    model_reader = config["features"]["model_reader"]
    if readers and model_reader and model_reader not in readers + pseudo:
        problems.append(
            f"config key features.model_reader: {model_reader!r} is not one of the readers "
            f"or pseudo-readers ({', '.join(readers + pseudo)})"
        )
    for rep, orig in c["repeats"].items():
        for name in (rep, orig):
            if name not in readers:
                problems.append(
                    f"config key cohort.repeats: {name!r} is not one of cohort.readers "
                    f"({', '.join(readers) or 'none'})"
                )
    rep = config["reproducibility"]
    if rep["enabled"] and "intra" in rep["kinds"] and not c["repeats"]:
        problems.append(
            "config key reproducibility.kinds: intra needs repeat readings (cohort.repeats)"
        )
    for cov in config["harmonization"]["covariates"]:
        if cov not in c["clinical"]:
            problems.append(
                f"config key harmonization.covariates: {cov!r} is not one of cohort.clinical"
            )
    clinical = list(c["clinical"])
    for col in (config.get("report") or {}).get("clinical_labels") or {}:
        if col not in clinical:
            problems.append(
                f"config key report.clinical_labels.{col}: {col!r} is not one of "
                f"cohort.clinical ({', '.join(clinical) or 'none'})"
            )
    h = config["harmonization"]
    if h["enabled"] and h["covariates"] and "combat_covariates" not in h["groups"].values():
        problems.append(
            "config key harmonization.covariates: no group preserves them: set "
            "harmonization.groups.radiomics (or deep, clinical) to combat_covariates"
        )
    endpoints = config["endpoints"]
    for ep, models in config["models"].items():
        if ep not in endpoints:
            problems.append(
                f"config key models.{ep}: no endpoint {ep!r} (endpoints: {', '.join(endpoints)})"
            )
            continue
        kind = endpoints[ep]["type"]
        for name, spec in models.items():
            where = f"config key models.{ep}.{name}"
            searched = "search" in spec
            if searched:
                fixed = [k for k in ("classifier", "cox", "selection") if k in spec]
                if fixed:
                    problems.append(
                        f"{where}: search replaces {' and '.join(fixed)}: give a search "
                        "block or a fixed model, not both"
                    )
            if kind == "binary" and "classifier" not in spec and not searched:
                problems.append(f"{where}: binary endpoint {ep!r} needs a classifier or a search")
            if kind == "survival" and "cox" not in spec and not searched:
                problems.append(f"{where}: survival endpoint {ep!r} needs a cox block or a search")
            if kind == "binary" and "cox" in spec:
                problems.append(f"{where}: cox is for survival endpoints; {ep!r} is binary")
            if kind == "survival" and "classifier" in spec:
                problems.append(f"{where}: classifier is for binary endpoints; {ep!r} is survival")
            if "deep" in spec["groups"] and not config["deep"]["enabled"]:
                problems.append(f"{where}: uses deep features but deep.enabled is false")
    deep = config["deep"]
    if deep["enabled"] and deep["endpoint"] not in endpoints:
        problems.append(
            f"config key deep.endpoint: {deep['endpoint']!r} is not one of the endpoints "
            f"({', '.join(endpoints)})"
        )
    _raise(problems)


def subtree(config: dict, *keys: str) -> dict:
    """The parts of ``config`` a job reads, as a fresh dict: ``subtree(cfg, "seed",
    "models.efs.cox")`` -> ``{"seed": 42, "models": {"efs": {"cox": {...}}}}``.
    Rules pass only these as params, so an edit elsewhere in the config does not
    rerun the job."""
    out: dict = {}
    for dotted in keys:
        *path, last = dotted.split(".")
        src, dst = config, out
        for p in path:
            src = src[p]
            dst = dst.setdefault(p, {})
        dst[last] = src[last]
    return unshare(out)


@functools.cache
def _imported_names(path: Path, mtime_ns: int) -> tuple[str, ...]:
    """Every module name ``path`` imports (at any depth of its syntax tree), parsed
    once per file version: the workflow asks for every rule's code files at parse
    time, and they share most modules."""
    import ast

    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return tuple(names)


def code_files(script: str | Path, package_dir: str | Path) -> list[Path]:
    """The package modules a job script runs: its ``radstudy`` imports, followed through
    the package (imports inside functions too, since the package imports lazily)."""
    package_dir = Path(package_dir)
    seen: set[Path] = set()
    todo = [Path(script)]
    while todo:
        path = todo.pop()
        for name in _imported_names(path, path.stat().st_mtime_ns):
            parts = name.split(".")
            if parts[0] != package_dir.name:
                continue
            rel = Path(*parts[1:]) if len(parts) > 1 else Path("__init__")
            for cand in (
                package_dir / rel.with_suffix(".py"),
                package_dir / rel / "__init__.py",
            ):
                if cand.is_file() and cand not in seen:
                    seen.add(cand)
                    todo.append(cand)
    seen.add(package_dir / "__init__.py")
    return sorted(seen)


def code_stamp(script: str | Path, package_dir: str | Path) -> str:
    """A hash of the package code a job script runs (the script itself is tracked by
    Snakemake): a rule passes it as a param, so a changed module reruns the jobs it
    produced (``snakemake --list-changes params`` lists them)."""
    h = hashlib.sha256()
    for f in code_files(script, package_dir):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


# Threads per model job: decided here, not in radstudy.search, because the workflow
# asks at parse time and radstudy.search imports scikit-learn and Optuna (3 s).
def job_threads(spec: dict) -> int:
    """Threads worth giving a job that fits model ``spec``: a searched model runs its
    inner-CV folds in parallel (at most 4), a fixed model runs on one."""
    return min(4, int(spec["search"].get("inner_cv", 3))) if "search" in spec else 1


def cv_job_threads(spec: dict) -> int:
    """Threads worth giving the CV job of model ``spec``: its outer folds run one per
    thread (radstudy.models.outer_folds), worth it for a searched model's nested
    searches (at most 8); a fixed model's folds run on one."""
    return 8 if "search" in spec else 1
