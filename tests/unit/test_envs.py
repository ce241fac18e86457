"""envs/*.yaml are complete: ``--sdm conda`` runs each rule in its own env.

For every rule of rules/*.smk, the modules its ``script:`` can import (directly, or
through the radstudy package) must come with that rule's ``conda:`` env, and each env
pins what it lists exactly as requirements.txt (or constraints.txt, for transitive
packages) does.

The imports are found statically (``ast``), by unit: a unit is a top-level function or
class of a radstudy module, or a module's top-level code (a rule script is one unit).
Starting from the rule's script, a unit reaches

* every import in its body, function-local ones included (the package imports
  lazily), and ``importlib.import_module("x")``;
* the radstudy units it names (``from radstudy.x import f``, then ``f``; ``mod.f``);
  any reached unit of a module also runs that module's top-level code;
* distributions it asks ``importlib.metadata`` about (``md.version("x")`` raises
  PackageNotFoundError where ``x`` is not installed);
* optional dependencies of a library that a call of ours needs (LIBRARY_EXTRAS).

A reached function or class counts whole (every branch), so an env covers every path
of its rules; functions a rule never reaches do not count (the report computes a
Spearman table from radstudy.deep but never trains a network: no torch in report.yaml).
Third-party modules map to pip distributions with importlib.metadata in this venv; the
libraries' own requirements are left to pip. An import an env lacks on purpose is
listed in OPTIONAL with the reason, and must sit in a ``try``/``except ImportError``.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
from collections import defaultdict
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
PACKAGE = "radstudy"

# Imports a rule's env lacks on purpose: (radstudy module, top-level module) -> why.
OPTIONAL = {
    ("radstudy.nnunet", "nnunetv2"): (
        "segmentation.method nnunet is an optional extra (make venv-nnunet): radstudy.nnunet "
        "catches the ImportError and says how to install it; envs/nnunet.yaml lists it"
    ),
    ("radstudy.nnunet", "torch"): (
        "nnU-Net's own dependency, imported in the same try/except ImportError as "
        "nnunetv2 (the same optional extra; envs/nnunet.yaml lists it)"
    ),
}

# Optional dependencies of a library (not installed by pip with it) that a call of
# ours needs: called attribute -> (distribution, why).
LIBRARY_EXTRAS = {
    "read_parquet": ("pyarrow", "pandas reads parquet through pyarrow (a pandas extra)"),
    "to_parquet": ("pyarrow", "pandas writes parquet through pyarrow (a pandas extra)"),
    "clustermap": ("scipy", "seaborn's clustermap clusters with scipy (a seaborn extra)"),
}

# importlib.metadata calls whose first argument is a distribution name
METADATA_CALLS = {
    f"importlib.metadata.{f}" for f in ("version", "distribution", "metadata", "requires")
}


def normalise(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


# ------------------------------------------------------------------------ rules, envs
RULE_RE = re.compile(r"^[ \t]*rule[ \t]+(\w+)[ \t]*:", re.M)
DIRECTIVE_RE = r"^[ \t]*{}:[ \t]*(?:#.*)?\n[ \t]*(?:\"([^\"]*)\"|'([^']*)')"


@cache
def rules() -> tuple[tuple[str, str, Path | None, Path | None], ...]:
    """(smk file, rule, env file, script file) of every rule in rules/*.smk."""
    out = []
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        text = smk.read_text()
        starts = list(RULE_RE.finditer(text))
        for i, m in enumerate(starts):
            block = text[m.end() : starts[i + 1].start() if i + 1 < len(starts) else None]
            paths = {}
            for key in ("conda", "script"):
                d = re.search(DIRECTIVE_RE.format(key), block, re.M)
                paths[key] = (smk.parent / (d[1] or d[2])).resolve() if d else None
            out.append((smk.name, m[1], paths["conda"], paths["script"]))
    return tuple(out)


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def pins(path: Path) -> dict[str, str]:
    """normalised name -> version of every ``name==version`` line."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if m := re.fullmatch(r"([A-Za-z0-9._-]+)(?:\[[^\]]*\])?\s*==\s*([^\s;]+).*", line):
            out[normalise(m[1])] = m[2]
    return out


def env_pip(env: Path) -> list[str]:
    """The pip lines of a conda env file."""
    deps = yaml.safe_load(env.read_text())["dependencies"]
    return [p for d in deps if isinstance(d, dict) for p in d.get("pip", [])]


def env_dists(env: Path) -> set[str]:
    return {normalise(re.split(r"[\[=<>!~ ;]", p, maxsplit=1)[0]) for p in env_pip(env)}


# ------------------------------------------------------------------ static import graph
def module_file(name: str) -> Path | None:
    """Source file of a radstudy module (``radstudy`` is its __init__)."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = SCRIPTS.joinpath(*parts)
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.is_file():
            return p
    return None


def catches_import_error(handler: ast.ExceptHandler) -> bool:
    t = handler.type
    names = t.elts if isinstance(t, ast.Tuple) else [t]
    return any(
        isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError") for n in names
    )


def literals(arg: ast.AST | None, nodes) -> list[str]:
    """The strings ``arg`` can be: a literal, or a loop variable over a literal tuple
    or list of strings (``md.version(p) for p in ("numpy", ...)``). Anything else is
    returned as a placeholder, which no env lists: a dynamic name is not checkable."""
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return [arg.value]
    if isinstance(arg, ast.Name):
        for n in nodes:
            for loop in ast.walk(n):
                if (
                    isinstance(loop, ast.comprehension | ast.For)
                    and isinstance(loop.target, ast.Name)
                    and loop.target.id == arg.id
                    and isinstance(loop.iter, ast.Tuple | ast.List | ast.Set)
                    and all(isinstance(e, ast.Constant) for e in loop.iter.elts)
                ):
                    return [e.value for e in loop.iter.elts]
    return [f"<non-literal distribution name {ast.unparse(arg) if arg else ''!r}>"]


class Module:
    """One radstudy module (units: None = top-level code, else a def/class name), or a
    rule script (one unit: the whole file)."""

    def __init__(self, name: str, path: Path, script: bool = False):
        self.name, self.path, self.script = name, path, script
        tree = ast.parse(path.read_text(), filename=str(path))
        self.units: dict[str | None, list[ast.AST]] = {None: []}
        for stmt in tree.body:
            if not script and isinstance(
                stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
            ):
                self.units[stmt.name] = [stmt]
                # decorators, defaults and bases run at import
                extra = list(stmt.decorator_list)
                if isinstance(stmt, ast.ClassDef):
                    extra += stmt.bases + [k.value for k in stmt.keywords]
                else:
                    extra += stmt.args.defaults + [d for d in stmt.args.kw_defaults if d]
                self.units[None] += extra
            else:
                self.units[None].append(stmt)
        self.guarded = {
            id(n)
            for t in ast.walk(tree)
            if isinstance(t, ast.Try) and any(catches_import_error(h) for h in t.handlers)
            for stmt in t.body
            for n in ast.walk(stmt)
            if isinstance(n, ast.Import | ast.ImportFrom)
        }
        self.symbols = self.bindings(self.units[None], top_level_only=True)

    def absolute(self, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        pkg = self.name.split(".")
        if self.path.name != "__init__.py":
            pkg = pkg[:-1]
        pkg = pkg[: len(pkg) - node.level + 1]
        return ".".join(pkg + ([node.module] if node.module else []))

    def imports(self, nodes, top_level_only=False):
        """Import statements in ``nodes`` (only the unit's own statements when
        ``top_level_only``: a def's body belongs to its own unit)."""
        todo = list(nodes)
        while todo:
            n = todo.pop()
            if isinstance(n, ast.Import | ast.ImportFrom):
                yield n
            elif not (top_level_only and isinstance(n, ast.FunctionDef | ast.ClassDef)):
                todo.extend(ast.iter_child_nodes(n))

    def bindings(self, nodes, top_level_only=False) -> dict[str, tuple]:
        """Local name -> ("module", radstudy module) | ("unit", module, name) |
        ("ext", dotted name of anything else)."""
        out = {}
        for n in self.imports(nodes, top_level_only):
            if isinstance(n, ast.Import):
                for a in n.names:
                    local = a.asname or a.name.split(".")[0]
                    target = a.name if a.asname else local
                    kind = "module" if module_file(target) else "ext"
                    out[local] = (kind, target)
            else:
                base = self.absolute(n)
                for a in n.names:
                    full = f"{base}.{a.name}"
                    if module_file(full):
                        out[a.asname or a.name] = ("module", full)
                    elif module_file(base):
                        out[a.asname or a.name] = ("unit", base, a.name)
                    else:
                        out[a.asname or a.name] = ("ext", full)
        return out


class Graph:
    """Walks the units a rule script reaches; collects what they need."""

    def __init__(self):
        self.modules: dict[str, Module] = {}
        # distribution or top-level module -> where: "unit: how"
        self.needs: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.optional_used: set[tuple[str, str]] = set()
        self.optional_unguarded: set[str] = set()

    def module(self, name: str) -> Module:
        if name not in self.modules:
            self.modules[name] = Module(name, module_file(name))
        return self.modules[name]

    def walk_script(self, script: Path) -> None:
        mod = Module(rel(script), script, script=True)
        self.modules[mod.name] = mod
        self.seen: set[tuple[str, str | None]] = set()
        self.todo = [(mod.name, None)]
        while self.todo:
            key = self.todo.pop()
            if key not in self.seen:
                self.seen.add(key)
                self.visit(self.module(key[0]), key[1])

    def reach(self, mod: str, name: str | None) -> None:
        m = self.module(mod)
        self.todo += [(PACKAGE, None), (mod, None)]
        if name in m.units:
            self.todo.append((mod, name))
        elif name is not None and m.symbols.get(name, ("",))[0] in ("unit", "module"):
            self.resolve(m.symbols[name])  # re-exported
        elif name is not None and module_file(f"{mod}.{name}"):
            self.reach_all(f"{mod}.{name}")

    def reach_all(self, mod: str) -> None:
        self.reach(mod, None)
        self.todo += [(mod, u) for u in self.module(mod).units]

    def resolve(self, binding: tuple) -> None:
        if binding[0] == "unit":
            self.reach(binding[1], binding[2])
        elif binding[0] == "module":
            self.reach_all(binding[1])

    def visit(self, m: Module, unit: str | None) -> None:
        nodes = m.units[unit]
        where = m.name if m.script else f"{m.name}.{unit}" if unit else f"{m.name} (top level)"
        local = {**m.symbols, **m.bindings(nodes)}

        for n in m.imports(nodes):
            if isinstance(n, ast.Import):
                names = [a.name for a in n.names]
            else:
                base = m.absolute(n)
                # importing runs the module's top level; a name counts once it is used
                names = [base] + [
                    f"{base}.{a.name}" for a in n.names if module_file(f"{base}.{a.name}")
                ]
            for name in names:
                if module_file(name):
                    self.reach(name, None)
                else:
                    self.third_party(m, name, where, guarded=id(n) in m.guarded)

        def dotted(e: ast.AST) -> str | None:
            if isinstance(e, ast.Name):
                b = local.get(e.id)
                return b[1] if b and b[0] == "ext" else None
            if isinstance(e, ast.Attribute):
                head = dotted(e.value)
                return f"{head}.{e.attr}" if head else None
            return None

        graph = self

        class Refs(ast.NodeVisitor):
            def visit_Attribute(self, node):
                if isinstance(node.value, ast.Name):
                    b = local.get(node.value.id)
                    if b and b[0] == "module":
                        graph.reach(b[1], node.attr)
                        return
                self.generic_visit(node)

            def visit_Name(self, node):
                if node.id in local:
                    if local[node.id][0] != "ext":
                        graph.resolve(local[node.id])
                elif node.id in m.units:  # a def or class of the same module
                    graph.reach(m.name, node.id)

            def visit_Call(self, node):
                func = dotted(node.func)
                arg = node.args[0] if node.args else None
                literal = arg.value if isinstance(arg, ast.Constant) else None
                if func == "importlib.import_module" and isinstance(literal, str):
                    graph.third_party(m, literal, f"{where} (import_module)", guarded=False)
                if func in METADATA_CALLS:
                    for dist in literals(arg, nodes):
                        graph.needs[("dist", normalise(dist))].add(
                            f"{where}: {func.rsplit('.', 1)[1]}({dist!r})"
                        )
                if isinstance(node.func, ast.Attribute) and node.func.attr in LIBRARY_EXTRAS:
                    dist, why = LIBRARY_EXTRAS[node.func.attr]
                    graph.needs[("dist", normalise(dist))].add(
                        f"{where}: .{node.func.attr}() ({why})"
                    )
                self.generic_visit(node)

        for n in nodes:
            Refs().visit(n)

    def third_party(self, m: Module, name: str, where: str, guarded: bool) -> None:
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or top == PACKAGE:
            return
        if (m.name, top) in OPTIONAL:
            self.optional_used.add((m.name, top))
            if not guarded:
                self.optional_unguarded.add(f"{where}: import {name}")
            return
        self.needs[("module", top)].add(f"{where}: import {name}")


@cache
def script_needs(script: Path) -> tuple[dict[str, set[str]], frozenset, frozenset]:
    """(normalised distribution -> where it is needed, optional imports reached,
    optional imports found unguarded) of one rule script."""
    g = Graph()
    g.walk_script(script)
    dists = md.packages_distributions()
    out: dict[str, set[str]] = defaultdict(set)
    for (kind, name), where in g.needs.items():
        if kind == "dist":
            out[normalise(name)] |= where
            continue
        found = dists.get(name)
        if not found:
            out[f"<no installed distribution provides module {name!r}>"] |= where
            continue
        for d in found:
            out[normalise(d)] |= where
    return out, frozenset(g.optional_used), frozenset(g.optional_unguarded)


def env_files() -> list[Path]:
    return sorted((ROOT / "envs").glob("*.yaml"))


# ------------------------------------------------------------------------------- tests
def test_every_rule_with_a_script_names_an_env_and_both_exist():
    found = rules()
    assert len(found) >= 15, f"parsed only {len(found)} rules from rules/*.smk"
    bad = [
        f"{smk}: rule {name}: conda={env} script={script}"
        for smk, name, env, script in found
        if script is not None and (env is None or not env.is_file() or not script.is_file())
    ]
    assert not bad, "rules whose conda env or script is missing:\n" + "\n".join(bad)
    used = {env for *_, env, script in found if script is not None}
    assert used <= set(env_files())


@pytest.mark.parametrize("env", env_files(), ids=lambda p: p.name)
def test_env_has_every_distribution_its_rules_import(env):
    its_rules = [(name, script) for _, name, e, script in rules() if e == env and script]
    if not its_rules:
        pytest.skip(f"no rule uses {rel(env)}")
    listed = env_dists(env)
    missing: dict[str, set[str]] = defaultdict(set)
    unguarded: set[str] = set()
    for name, script in its_rules:
        needs, _, bad = script_needs(script)
        unguarded |= bad
        for dist, where in needs.items():
            if dist not in listed:
                missing[dist] |= {f"rule {name} <- {w}" for w in where}
    assert not unguarded, (
        "imports listed in OPTIONAL but not inside try/except ImportError:\n"
        + "\n".join(sorted(unguarded))
    )
    assert not missing, f"{rel(env)} lacks what its rules import:\n" + "\n".join(
        f"  {dist}:\n"
        + "\n".join(f"    {w}" for w in sorted(where)[:6])
        + (f"\n    ... and {len(where) - 6} more" if len(where) > 6 else "")
        for dist, where in sorted(missing.items())
    )


def test_every_optional_entry_is_still_reached():
    used = set().union(*(script_needs(s)[1] for *_, s in rules() if s))
    stale = set(OPTIONAL) - used
    assert not stale, f"OPTIONAL entries no rule reaches any more (remove them): {stale}"


@pytest.mark.parametrize("env", env_files(), ids=lambda p: p.name)
def test_env_pins_match_requirements(env):
    direct, locked = pins(ROOT / "requirements.txt"), pins(ROOT / "constraints.txt")
    # the optional nnU-Net extra pins its own (envs/nnunet.yaml)
    locked = {**pins(ROOT / "requirements-nnunet.txt"), **locked}
    bad = []
    for line in env_pip(env):
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", line.strip())
        if not m:
            bad.append(f"{line!r}: not pinned as name==version")
            continue
        name, version = normalise(m[1]), m[2]
        want = direct.get(name, locked.get(name))
        if want is None:
            bad.append(f"{m[1]}: in neither requirements.txt nor constraints.txt")
        elif version != want:
            src = "requirements.txt" if name in direct else "constraints.txt"
            bad.append(f"{m[1]}=={version}: {src} pins {want}")
    assert not bad, f"{rel(env)}:\n" + "\n".join(f"  {b}" for b in bad)


def test_import_graph_finds_lazy_and_transitive_imports():
    """The walker itself: a function-local import two radstudy modules away counts, a
    function the script never reaches does not."""
    needs, *_ = script_needs(SCRIPTS / "render_report.py")
    assert "simpleitk" in needs  # report -> deep (top level: import SimpleITK)
    assert "statsmodels" in needs  # deep.spearman_with_descriptors (function-local)
    assert "torch" not in needs and "monai" not in needs  # deep's training: not reached
    needs, *_ = script_needs(SCRIPTS / "fit_combat.py")
    assert "neurocombat" in needs  # harmonize: importlib.import_module("neuroCombat...")
