"""The shape of the code: no import cycle, cheap imports for the shared layer, references that resolve."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))
import import_graph  # noqa: E402


def test_the_import_graph_has_no_cycle():
    edges = import_graph.graph()
    assert "robustrec.runs" in edges and "robustrec.plots" in edges["robustrec.runs"]  # the graph is read
    assert import_graph.cycles(edges) == []


def test_cycle_finder_finds_a_cycle():
    assert import_graph.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _modules_after(code: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
                          capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    return {name.split(".")[0] for name in done.stdout.split()}


def test_the_noise_estimators_import_numpy_only():
    loaded = _modules_after("import robustrec.noise")
    assert "numpy" in loaded
    assert not loaded & {"torch", "torchrec", "fbgemm_gpu", "scipy", "pandas", "transformers"}


def test_alignment_does_not_import_torchrec():
    code = ("import importlib, pkgutil, alignment\n"
            "for m in pkgutil.walk_packages(alignment.__path__, 'alignment.'):\n"
            "    if not m.name.endswith('__main__'):\n"
            "        importlib.import_module(m.name)")
    loaded = _modules_after(code)
    assert "trl" in loaded  # the modules were imported
    assert not loaded & {"torchrec", "fbgemm_gpu"}


# a path in the repository, unless it follows --out (a file a command will write)
REFERENCE = re.compile(r"(?<!--out )\b((?:docs|tests|benchmarks|scripts|examples)/[\w./-]+\.(?:md|py|csv|json|png))")


@pytest.mark.parametrize("pattern", ["*.md", "robustrec/**/*.py", "alignment/**/*.py", "benchmarks/*.py",
                                     "examples/*.py", "scripts/*.py", "docs/*.md"])
def test_every_file_reference_resolves(pattern):
    missing = []
    for path in REPO_ROOT.glob(pattern):
        for ref in REFERENCE.findall(path.read_text()):
            if not (REPO_ROOT / ref.rstrip(".")).exists():
                missing.append(f"{path.relative_to(REPO_ROOT)}: {ref}")
    assert not missing, missing
    assert "DESIGN.md" not in "".join(p.read_text() for p in REPO_ROOT.glob(pattern)), "DESIGN.md is not in the repo"


# import name -> distribution name, where they differ
DISTRIBUTION = {"yaml": "pyyaml", "fbgemm_gpu": "torchrec"}


def _third_party_imports(folder: Path, *, exclude: tuple[str, ...] = ()) -> dict[str, set[str]]:
    """Top-level import name -> files importing it, for the ``.py`` files under ``folder``."""
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        if any(part in exclude for part in path.relative_to(folder).parts):
            continue
        for module in import_graph.imported_names(path):
            top = module.split(".")[0]
            if top not in sys.stdlib_module_names and top not in ("robustrec", "alignment", "__future__"):
                found.setdefault(top, set()).add(path.name)
    return found


def _requirements(*extras: str) -> set[str]:
    import tomllib

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    lists = [project["dependencies"], *(project["optional-dependencies"][e] for e in extras)]
    return {re.split(r"[<>=!~\[ ;]", req, maxsplit=1)[0].lower() for reqs in lists for req in reqs}


@pytest.mark.parametrize("folder, extras, exclude", [
    ("robustrec/noise", (), ()),
    ("robustrec", ("rec",), ("noise",)),
    ("alignment", ("align",), ()),
])
def test_each_install_extra_covers_what_its_package_imports(folder, extras, exclude):
    imported = _third_party_imports(REPO_ROOT / folder, exclude=exclude)
    assert imported, "no third-party import found: the scan is broken"
    missing = {name: files for name, files in imported.items()
               if DISTRIBUTION.get(name, name).lower() not in _requirements(*extras)}
    assert not missing, f"imports not declared in pyproject ({extras or 'core'}): {missing}"


def test_alignment_uses_only_the_shared_parts_of_robustrec():
    used = {m for path in (REPO_ROOT / "alignment").rglob("*.py") for m in import_graph.imported_names(path)
            if m.startswith("robustrec")}
    shared = ("robustrec.noise", "robustrec.atomic", "robustrec.rundir")  # numpy/stdlib only, no torchrec
    assert used and all(m.startswith(shared) for m in used), used
