"""The layering rule of docs/architecture.rst, checked: import-linter contracts (.importlinter)
and the rules import-linter does not express (every module classified, no module too long)."""
import configparser
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "ot_pde"
#: modules that are neither frame, library nor kind: the package root, the CLI on top, and the
#: area packages that only group kinds and libraries
TOP = {"ot_pde", "ot_pde.__main__", "ot_pde._version", "ot_pde.cli",
       "ot_pde.euler", "ot_pde.flows", "ot_pde.ising", "ot_pde.transport"}
MAX_LINES = 600


def _contracts():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / ".importlinter")
    return cfg


def _listed(cfg, section, key):
    return cfg[section][key].split()


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        yield name.removesuffix(".__init__"), path


def test_import_linter_contracts_are_kept():
    pytest.importorskip("importlinter")
    # in a child process: import-linter reconfigures logging, which later in-process CLI
    # tests then no longer capture
    script = ("import sys; from importlinter.cli import lint_imports; "
              "sys.exit(lint_imports(config_filename=sys.argv[1]))")
    run = subprocess.run([sys.executable, "-c", script, str(ROOT / ".importlinter")],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]


def test_every_module_is_frame_library_or_kind():
    cfg = _contracts()
    kinds = _listed(cfg, "importlinter:contract:kinds-independent", "modules")
    frame = _listed(cfg, "importlinter:contract:frame-below-all", "source_modules")
    libraries = _listed(cfg, "importlinter:contract:libraries-below-kinds", "source_modules")
    named = kinds + frame + libraries
    loose = [m for m, _ in _modules()
             if m not in TOP and not any(m == n or m.startswith(n + ".") for n in named)]
    assert not loose, f"modules outside every layer of .importlinter: {loose}"


def test_each_kind_registers_once_in_its_package():
    kinds = _listed(_contracts(), "importlinter:contract:kinds-independent", "modules")
    for kind in kinds:
        pkg = PACKAGE.joinpath(*kind.split(".")[1:])
        registering = [p for p in pkg.rglob("*.py") if "register(ProblemKind(" in p.read_text()]
        assert len(registering) == 1, f"{kind}: expected one ProblemKind registration, got {registering}"


def test_no_module_over_the_limit():
    long = {str(p.relative_to(ROOT)): n for _, p in _modules()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def _name_comparisons(tree):
    """Lines comparing a backend's name (``backend.name == ...``, ``x.backend.name != ...``)
    outside a function named ``_select_kernels``."""
    import ast

    found = []

    def visit(node, in_table):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_table = in_table or node.name == "_select_kernels"
        if isinstance(node, ast.Compare) and not in_table:
            for side in [node.left, *node.comparators]:
                if (isinstance(side, ast.Attribute) and side.attr == "name"
                        and "backend" in ast.unparse(side.value)):
                    found.append(node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child, in_table)

    visit(tree, False)
    return found


def test_backends_are_bound_only_through_kernel_tables():
    """Code binds kernels to a backend in one table per solver or model (Backend.bind, or a
    solver's _select_kernels) and compares backend names nowhere else."""
    import ast

    offenders = [f"{path.relative_to(ROOT)}:{line}" for name, path in _modules()
                 if name != "ot_pde.backends"
                 for line in _name_comparisons(ast.parse(path.read_text()))]
    assert not offenders, f"backend names compared outside a kernel table: {offenders}"
