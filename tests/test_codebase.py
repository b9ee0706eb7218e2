"""What the codebase promises about itself: the serving import path loads no torch, one module builds
the object graph, comments say why rather than which experiment, and the README's figures are the
committed results'."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from bench import model_cards, readme_figures

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("app", "router", "models", "training", "bench")
WIRING = ROOT / "app" / "wiring.py"
# the classes whose construction is the object graph: backend clients, their configs, the engine
BUILT_BY_WIRING = {"VllmGenerator", "VllmVerifier", "HttpBackendConfig", "Engine"}


def _sources() -> list[Path]:
    return sorted(p for folder in PRODUCT for p in (ROOT / folder).rglob("*.py"))


def test_the_serving_import_path_loads_no_torch() -> None:
    probe = ("import sys, ttc_serve.app.main, ttc_serve.app.cli;"
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'vllm',"
             " 'matplotlib', 'scipy'}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_only_the_wiring_module_builds_clients_and_engines() -> None:
    builders = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name in BUILT_BY_WIRING and path != WIRING:
                    builders.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert builders == []


def test_code_goes_through_the_installed_name() -> None:
    bare = re.compile(r"^\s*(from|import) (app|router|models|training)\b", re.M)
    found = [str(p.relative_to(ROOT)) for p in [*_sources(), *(ROOT / "tests").rglob("*.py")]
             if bare.search(p.read_text())]
    assert found == []


def test_no_comment_cites_a_lab_notebook_row_or_a_session() -> None:
    citation = re.compile(r"\brows? \d+[a-z]?\b|\bsessions? \d+|\bwork[- ]log\b", re.I)
    found = []
    for path in _sources():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if citation.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert found == []


def test_the_readme_figures_are_the_committed_results() -> None:
    text = (ROOT / "README.md").read_text()
    assert set(readme_figures.blocks_in(text)) == set(readme_figures.BLOCKS)
    assert readme_figures.render(text) == text, "run `python -m bench.readme_figures`"


def test_the_model_cards_are_generated_from_the_committed_results() -> None:
    results = readme_figures._json(readme_figures.RESULTS / "models.json")
    for name in model_cards.COMMANDS:
        card = model_cards.EMBEDDED_DIR / name / "README.md"
        assert card.read_text() == model_cards.card(name, results), f"`make figures` ({name})"


def test_the_real_model_matrix_is_quoted_from_its_results_and_kept_every_promise() -> None:
    import json

    from bench import real_model_matrix

    report = json.loads(real_model_matrix.RESULTS.read_text())
    assert report["requests"] == 84 and report["over_budget"] == 0
    assert all(r["status"] == 200 or 400 <= r["status"] < 500 for r in report["rows"])
    assert real_model_matrix.markdown(report) in (ROOT / "docs" / "serving.md").read_text()
