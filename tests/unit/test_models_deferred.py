"""Seawall's pydantic models build their validators on first use, not at import.

Building the validators of every model at import cost each process ~0.25 CPU-s of its ~1 s start:
every `seawall` command, worker and API process, about 130 of them in one run of the suite. A process
now builds only the models it validates or dumps.

The API's and the console's models are the exception: their server builds every route's models as it
starts anyway, and FastAPI wraps a request body's model in an annotation that pydantic warns about
when that model's build was deferred.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import subprocess
import sys

from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings

import seawall

_BUILT_BY_THEIR_SERVER = ("seawall.api.", "seawall.console.")


def _seawall_models() -> list[type[BaseModel]]:
    for info in pkgutil.walk_packages(seawall.__path__, "seawall."):
        if not info.name.endswith(".__main__"):  # that one runs the CLI
            importlib.import_module(info.name)
    found: dict[str, type[BaseModel]] = {}
    for name, module in list(sys.modules.items()):
        if not name.startswith("seawall.") or module is None:
            continue
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(cls, BaseModel)
                and not issubclass(cls, BaseSettings)
                and cls.__module__.startswith("seawall.")
                and not cls.__module__.startswith(_BUILT_BY_THEIR_SERVER)
            ):
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return list(found.values())


def test_every_model_defers_its_build() -> None:
    models = _seawall_models()
    assert len(models) > 150, len(models)
    eager = sorted(
        f"{m.__module__}.{m.__qualname__}" for m in models if not m.model_config.get("defer_build")
    )
    assert eager == [], f"models built at import (add defer_build=True to their model_config): {eager}"


def test_a_cli_process_builds_no_model_until_it_uses_one() -> None:
    probe = (
        "import json, seawall.cli\n"
        "from seawall.contract.recovery import PlanRunInput\n"
        "from seawall.model import Inventory\n"
        "before = [PlanRunInput.__pydantic_complete__, Inventory.__pydantic_complete__]\n"
        "Inventory.model_json_schema()\n"
        "print(json.dumps(before + [Inventory.__pydantic_complete__]))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [False, False, True]


def test_a_deferred_model_still_refuses_bad_input_naming_the_field() -> None:
    from seawall.contract.recovery import PlanRunInput

    fields = PlanRunInput.model_fields
    try:
        PlanRunInput.model_validate({"no_such_field": 1})
    except ValidationError as e:
        locs = {err["loc"][0] for err in e.errors()}
    else:
        raise AssertionError("accepted an unknown field")
    assert "no_such_field" in locs
    assert {name for name in fields if fields[name].is_required()} <= locs
