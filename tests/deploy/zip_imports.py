"""What a function's code imports, read statically from its deployment zip.

Starting at the function's entry modules, every ``import`` of our own code is followed into
the module file *inside the zip* (a missing one is reported), at any depth and including
imports inside functions (lazy imports run later, on a failure path or the first record, and
must resolve too). Imports under ``if TYPE_CHECKING:`` and inside ``try:`` blocks that handle
``ImportError`` are optional and skipped. What is left is the set of third-party top-level
names the zip must provide. Architecture-independent: nothing is imported or executed.
"""
from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field

OPTIONAL_IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError"}


@dataclass
class ImportScan:
    own_modules: set[str] = field(default_factory=set)  # our modules reached (zip paths)
    missing_own: set[str] = field(default_factory=set)  # our modules imported but not in the zip
    third_party: dict[str, str] = field(default_factory=dict)  # top-level name -> first importer


def module_path(names: set[str], module: str) -> str | None:
    base = module.replace(".", "/")
    for candidate in (f"{base}.py", f"{base}/__init__.py"):
        if candidate in names:
            return candidate
    return None


def provides_top_level(names: set[str], top: str) -> bool:
    """Does the zip hold an importable top-level ``top`` (package, module or extension)?"""
    return any(n.startswith(f"{top}/") or n == f"{top}.py"
               or (n.startswith(f"{top}.") and n.endswith(".so") and "/" not in n) for n in names)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _handles_import_error(node: ast.Try) -> bool:
    for handler in node.handlers:
        types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if any(isinstance(t, ast.Name) and t.id in OPTIONAL_IMPORT_ERRORS for t in types):
            return True
    return False


def _imports(tree: ast.AST):
    """Yield (module, names, level) for each non-optional import statement."""
    def walk(node: ast.AST):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for sub in child.orelse:
                    yield from walk_one(sub)
                continue
            if isinstance(child, ast.Try) and _handles_import_error(child):
                for part in (*child.handlers, *child.orelse, *child.finalbody):
                    yield from walk_one(part)
                continue
            yield from walk_one(child)

    def walk_one(node: ast.AST):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], 0
        elif isinstance(node, ast.ImportFrom):
            yield node.module or "", [a.name for a in node.names], node.level
        yield from walk(node)

    yield from walk(tree)


def scan(names: set[str], read, entries: list[str], own_tops: set[str]) -> ImportScan:
    """Follow imports from the ``entries`` modules through our own code in the zip.

    ``names``: the zip's file names; ``read(path) -> str``; ``own_tops``: top-level names that
    are this project's code (``handlers``, ``streamkit``, ...)."""
    result = ImportScan()
    stdlib = set(sys.stdlib_module_names)
    todo = list(entries)
    seen: set[str] = set()

    def want(module: str, importer: str) -> None:
        top = module.split(".", 1)[0]
        if top in own_tops:
            parts = module.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a, a.b and a.b.c
                todo.append(".".join(parts[:i]))
        elif top not in stdlib and top != "__future__":
            result.third_party.setdefault(top, importer)

    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = module_path(names, module)
        if path is None:
            result.missing_own.add(module)
            continue
        result.own_modules.add(path)
        package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
        for target, imported, level in _imports(ast.parse(read(path), path)):
            if level:
                base = package.split(".")
                base = base[: len(base) - (level - 1)] if level > 1 else base
                target = ".".join([*base, target] if target else base)
            want(target, module)
            for name in imported:  # `from pkg import sub` imports the submodule pkg.sub
                if name != "*" and module_path(names, f"{target}.{name}"):
                    want(f"{target}.{name}", module)
    return result
