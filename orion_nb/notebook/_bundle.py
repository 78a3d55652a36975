"""One ES module for anywidget out of the front-end's small modules, with no build step.

The files in ``extensions/`` are plain ES modules that import each other by relative path
(``import { layoutGraph } from "./graph.js";``), so a page serving the folder (the browser
tests, a developer) runs them as they are. anywidget, however, loads a widget's ``_esm``
from a ``blob:`` URL, where a relative import has nothing to resolve against. This module
links them without a bundler:

- every relative import at the top of a file, in one of the forms ``import * as X from
  "./f.js";``, ``import X from "./f.js";`` or ``import { a, b as c } from "./f.js";``, is
  replaced by ``const ... = await globalThis.__orionNbImport("<key>");`` (top-level await);
- the entry module starts with a prelude that registers the source of every module it needs,
  keyed by path and a hash of the text, and defines ``__orionNbImport``, which imports each
  source once per page from a ``blob:`` URL of its own (so the RunView inside the history
  browser and a RunView beside it share one instance of ``graph.js`` and of dagre);
- ``//# sourceMappingURL`` lines are dropped: the maps are not shipped, and a widget makes no
  request of any kind.

Any other import form is an error at import time (a test bundles every entry), never a widget
that fails silently in the browser.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

__all__ = ["bundle"]

_IMPORT = re.compile(
    r"^import\s+(?:\*\s+as\s+(?P<star>\w+)|\{(?P<names>[^}]*)\}|(?P<default>\w+))\s+"
    r'from\s+"(?P<path>\./[\w./-]+\.js)";[ \t]*$',
    re.MULTILINE,
)
_ANY_IMPORT = re.compile(r"^import\s", re.MULTILINE)
_SOURCE_MAP = re.compile(r"^//# sourceMappingURL=.*$", re.MULTILINE)

_PRELUDE = """\
const __onbRegistry = (globalThis.__orionNbSources ??= new Map());
for (const [key, src] of Object.entries(%s)) if (!__onbRegistry.has(key)) __onbRegistry.set(key, src);
globalThis.__orionNbImport ??= (key) => {
  const urls = (globalThis.__orionNbUrls ??= new Map());
  let url = urls.get(key);
  if (url === undefined) {
    const src = globalThis.__orionNbSources.get(key);
    if (src === undefined) throw new Error(`orion_nb: front-end module ${key} is missing`);
    url = URL.createObjectURL(new Blob([src], { type: "text/javascript" }));
    urls.set(key, url);
  }
  return import(url);
};
"""


def _binding(m: re.Match[str], expr: str) -> str:
    if m.group("star"):
        return f"const {m.group('star')} = {expr};"
    if m.group("default"):
        return f"const {m.group('default')} = ({expr}).default;"
    parts = []
    for item in (m.group("names") or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, _, alias = (p.strip() for p in item.partition(" as "))
        parts.append(f"{name}: {alias}" if alias else name)
    return f"const {{ {', '.join(parts)} }} = {expr};"


def _link(path: Path, sources: dict[str, str], seen: tuple[Path, ...]) -> str:
    """The text of ``path`` with its relative imports rewritten; its dependencies in ``sources``."""
    if path in seen:
        chain = " -> ".join(p.name for p in (*seen, path))
        raise ValueError(f"Front-end modules import each other in a circle: {chain}.")
    text = _SOURCE_MAP.sub("", path.read_text(encoding="utf-8"))

    def replace(m: re.Match[str]) -> str:
        dep = (path.parent / m.group("path")).resolve()
        linked = _link(dep, sources, (*seen, path))
        key = f"{dep.name}#{hashlib.sha256(linked.encode()).hexdigest()[:16]}"
        sources.setdefault(key, linked)
        return _binding(m, f"await globalThis.__orionNbImport({json.dumps(key)})")

    linked = _IMPORT.sub(replace, text)
    if _ANY_IMPORT.search(linked):
        raise ValueError(
            f"{path.name} has an import orion_nb cannot link; use `import * as X`, "
            '`import X` or `import { a, b }` from "./file.js" at the start of a line.'
        )
    return linked


def bundle(entry: Path) -> str:
    """The ES module ``entry`` with everything it imports, loadable from a ``blob:`` URL."""
    sources: dict[str, str] = {}
    linked = _link(entry.resolve(), sources, ())
    if not sources:
        return linked
    return _PRELUDE % json.dumps(sources) + linked
