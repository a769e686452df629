"""Protected: the renderer's side of the evaluation, run by evaluate.py as a child process.

`python -S -I render_corpus.py DIR` reads DIR/inputs.json (the templates and one context per
pass, chosen by evaluate.py), renders every template with every pass's context through
`renderer.render`, and writes DIR/outputs.json (one list of outputs per pass). Nothing else: it
is timed from outside, and evaluate.py checks every output against python-liquid. `-S` leaves
site-packages out: the reference engine is not at hand (program.md forbids reaching for it).
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # -I leaves the script's folder out

import renderer  # noqa: E402

folder = Path(sys.argv[1])
inputs = json.loads((folder / "inputs.json").read_text())
names, sources = inputs["names"], inputs["sources"]
outputs = []
for context in inputs["contexts"]:
    rendered = []
    for name, source in zip(names, sources, strict=True):
        try:
            rendered.append(renderer.render(source, context))
        except Exception as exc:
            sys.exit(f"renderer.render failed on {name}: {type(exc).__name__}: {exc}")
    outputs.append(rendered)
(folder / "outputs.json").write_text(json.dumps(outputs))
