"""Builds the three notebooks from their sources: `python notebooks/build_notebooks.py`.

Each notebook is written as a percent-format Python file in `notebooks/src/` (jupytext's `# %%` cells, linted
by ruff like the rest of the code); the committed `.ipynb` is built from it without outputs. Two directives
keep one copy of everything:
- `@source PATH::NAME[,NAME...]` (a line of its own): the definitions of those functions or classes in PATH,
  the original tutorial code in `torchport/originals/` or torchport's own, taken from the file itself: as
  code in a code cell (written `# @source ...` there), as a fenced block in a markdown cell;
- `@install` (code cell) and `@badge` (markdown): the cell that installs torchport only when it is missing
  (Colab's preinstalled torch is kept) and the Open-in-Colab badge, both pointing at REPO.
"""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import jupytext
import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REPO = "torchport/torchport"  # on a fork: the owner/name of your repository
NOTEBOOKS = ["mnist_tutorial", "cifar10_keras", "port_your_keras_model"]
INSTALL = f'''# Install torchport only when it is missing; on Colab this keeps the preinstalled torch.
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("torchport") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/{REPO}"],
                   check=True)'''
SOURCE = re.compile(r"^(# )?@source (\S+)::(\S+)$", re.M)


def badge(name: str) -> str:
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{REPO}/blob/main/notebooks/{name}.ipynb)")


def definitions(path: str, names: str) -> str:
    """The source text of the named top-level functions or classes of a file in this repository."""
    text = (ROOT / path).read_text()
    found = {n.name: ast.get_source_segment(text, n) for n in ast.parse(text).body
             if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    missing = [n for n in names.split(",") if n not in found]
    if missing:
        raise SystemExit(f"{path} defines no {', '.join(missing)}")
    return "\n\n".join(found[n] for n in names.split(","))


def expand(cell, name: str):
    text = cell.source
    if cell.cell_type == "code":
        text = text.replace("# @install", INSTALL)
        text = SOURCE.sub(lambda m: definitions(m[2], m[3]), text)
        new = new_code_cell(text)
        if cell.metadata.get("tags"):
            new.metadata["tags"] = list(cell.metadata["tags"])
        return new
    text = text.replace("@badge", badge(name))
    text = SOURCE.sub(lambda m: f"```python\n{definitions(m[2], m[3])}\n```", text)
    return new_markdown_cell(text)


def build(name: str, out: Path = HERE) -> Path:
    source = jupytext.read(HERE / "src" / f"{name}.py", fmt="py:percent")
    nb = new_notebook(cells=[expand(c, name) for c in source.cells], metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"}, "accelerator": "GPU", "colab": {"provenance": []}})
    for i, cell in enumerate(nb.cells):  # stable ids: rebuilding changes nothing unless a cell does
        cell.id = f"{name.split('_')[0]}-{i:02d}"
    nbformat.validate(nb)
    path = out / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    for notebook in NOTEBOOKS:
        build(notebook, target)
