"""Every public function, class and method of the API has a docstring: the API reference of the
docs site (mkdocstrings, ``docs/reference/``) is built from them, and a name without one is a
blank entry there."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator
from typing import Any

import pytest

# The public modules: `metrana`, `metrana.query` and each `metrana.integrations.<framework>`.
PUBLIC_MODULES = ["metrana", "metrana.query", "metrana.integrations.gymnasium",
                  "metrana.integrations.sb3", "metrana.integrations.transformers",
                  "metrana.integrations.lightning"]


def _own_doc(obj: Any) -> str | None:
    """The object's own docstring: a class inherits none from its bases here."""
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    return doc.strip() if isinstance(doc, str) and doc.strip() else None


def public_names() -> Iterator[tuple[str, Any]]:
    """(qualified name, object) of every public function and class, and every public method or
    property of those classes that metrana defines (not those inherited from a framework)."""
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue  # constants and aliases document themselves in the guides
            yield f"{module_name}.{name}", obj
            if not inspect.isclass(obj):
                continue
            seen: set[str] = set()
            own = [k for k in obj.__mro__ if k.__module__.split(".")[0] == "metrana"]
            for attr, value in (item for k in own for item in vars(k).items()):
                if attr.startswith("_") or attr in seen:
                    continue
                seen.add(attr)
                member = value.fget if isinstance(value, property) else value
                member = getattr(member, "__func__", member)  # staticmethod, classmethod
                if inspect.isfunction(member):
                    yield f"{module_name}.{name}.{attr}", member


PUBLIC = list(public_names())


def test_the_public_api_is_found() -> None:
    """The walk sees the names the guides use (a broken walk would pass every check below)."""
    names = {name for name, _ in PUBLIC}
    assert {"metrana.init", "metrana.log", "metrana.Session.log", "metrana.query.QueryClient",
            "metrana.query.QueryClient.fetch_runs", "metrana.integrations.sb3.MetranaCallback",
            "metrana.integrations.lightning.MetranaLogger"} <= names


@pytest.mark.parametrize(("name", "obj"), PUBLIC, ids=[name for name, _ in PUBLIC])
def test_public_name_has_a_docstring(name: str, obj: Any) -> None:
    assert _own_doc(obj), f"{name} has no docstring: the API reference would show nothing"


def test_a_missing_docstring_is_caught() -> None:
    """The check fails on a class without its own docstring, even when its base has one."""
    class Base:
        """Documented."""

    class Undocumented(Base):
        pass

    def undocumented() -> None:
        pass

    assert _own_doc(Base) == "Documented."
    assert _own_doc(Undocumented) is None
    assert _own_doc(undocumented) is None
