"""Name -> factory registries, so a new model, dataset, method or heatmap method is one self-registering file.

A registration may state facts about its entry as literals (`@FINETUNE_METHODS.register("zs", trains=False)`):
they become attributes of the entry, and `declared` reads them, with the names, straight from the source files,
so that checking a config never imports the (torch-heavy) modules that register.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from functools import cache
from pathlib import Path
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """`source` = (package, variable name): entries declared in that package's modules are imported on first use,
    so a job imports the one adapter it runs (ALBEF/BLIP pull in timm and transformers; open_clip jobs need
    neither)."""

    def __init__(self, kind: str, source: tuple[str, str] | None = None) -> None:
        self.kind = kind
        self.source = source
        self._entries: dict[str, T] = {}

    def register(self, name: str, **facts: Any) -> Callable[[T], T]:
        def add(entry: T) -> T:
            if name in self._entries:
                raise KeyError(f"{self.kind} {name!r} is registered twice")
            for key, value in facts.items():
                setattr(entry, key, value)
            self._entries[name] = entry
            return entry

        return add

    def _declared(self) -> dict[str, str]:
        return {name: module for name, (module, _) in _declarations(*self.source).items()} if self.source else {}

    def get(self, name: str) -> T:
        module = self._declared().get(name)
        if name not in self._entries and module:
            importlib.import_module(module)
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; registered: {', '.join(self)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._declared()

    def __iter__(self) -> Iterator[str]:
        return iter(sorted({*self._entries, *self._declared()}))


def declared(package: str, registry: str) -> dict[str, dict[str, Any]]:
    """{name: facts} of every `@<registry>.register("name", fact=literal, …)` in the modules of `package`, read
    from the source without importing them."""
    return {name: facts for name, (_, facts) in _declarations(package, registry).items()}


@cache
def _declarations(package: str, registry: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """{name: (declaring module, facts)}, from the source of `package`'s modules."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"no package {package}")
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for path in sorted(Path(spec.submodule_search_locations[0]).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for decorator in getattr(node, "decorator_list", []):
                call = decorator if isinstance(decorator, ast.Call) else None
                target = call.func if call else None
                if (
                    isinstance(target, ast.Attribute)
                    and target.attr == "register"
                    and isinstance(target.value, ast.Name)
                    and target.value.id == registry
                ):
                    facts = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
                    found[ast.literal_eval(call.args[0])] = (f"{package}.{path.stem}", facts)
    return dict(sorted(found.items()))
