"""The module layering: no import cycles among spiketandem's modules (every import statement, also those
inside functions, found by reading the source), the config imports no rule, and no rule imports the
command layer (workflow, cli)."""
import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "spiketandem"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """spiketandem modules that ``path`` imports anywhere (at module level or inside a function)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("spiketandem")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("spiketandem"):
                continue
            modules = {target}
            for alias in node.names:  # `from . import distributed` imports a module
                candidate = f"{target}.{alias.name}"
                if (SRC.parent / (candidate.replace(".", "/") + ".py")).is_file() or \
                        (SRC.parent / candidate.replace(".", "/") / "__init__.py").is_file():
                    modules.add(candidate)
            found |= modules
    return found - {name}


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in SRC.rglob("*.py")}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan).  Edges from a module to its own
    ancestor packages are skipped: Python imports those first anyway (``from . import x``)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if v.startswith(w + "."):
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    edges = graph()
    assert sum(map(len, edges.values())) > 300  # the graph was really read
    assert "spiketandem.workflow" in edges["spiketandem.commands"]  # a function-level import is an edge too
    assert cycles(edges) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_layering():
    edges = graph()
    assert not any(m.startswith("spiketandem.rules") for m in edges["spiketandem.config"]), "config imports a rule"
    for module, targets in edges.items():
        if module.startswith("spiketandem.rules"):
            assert not targets & {"spiketandem.workflow", "spiketandem.cli", "spiketandem.commands",
                                  "spiketandem.run_flags"}, module
