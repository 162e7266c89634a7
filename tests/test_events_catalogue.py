"""scripts/events_catalogue.py: what it writes, and its check failing on a stale file.

(`make docs-check` checks docs/events.md itself.)
"""

import importlib.util
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Literal

import pytest
from pydantic import BaseModel

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "events_catalogue.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("events_catalogue", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look the module up by name while building the classes.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


catalogue = load_script()


class Line(BaseModel):
    description: str
    amount: Decimal


class DemoHappened(BaseModel):
    """A demo payload."""

    demo_id: int
    lines: list[Line]
    due_date: date | None
    kind: Literal["a", "b"] = "a"


def demo_producer() -> object:
    return catalogue.Producer(
        "demo", "demo.events", "/services/demo", {"demo.happened": DemoHappened}
    )


def test_check_fails_on_a_stale_file_and_says_what_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "events.md"
    output.write_text("# Events catalogue\n\nwritten by hand\n")

    assert catalogue.main(["--check", "--output", str(output)]) == 1
    assert "Run `make events-doc`" in capsys.readouterr().err

    assert catalogue.main(["--output", str(output)]) == 0
    assert catalogue.main(["--check", "--output", str(output)]) == 0


def test_payload_fields_types_and_consumers_are_listed() -> None:
    consumer = catalogue.Consumer(
        "other", "other-service", ["demo.events"], {"demo.happened": "other.consumers.on_demo"}
    )

    text = catalogue.render([demo_producer()], [consumer])

    assert "| `demo.events` | demo | `demo.happened` | other (`other-service`) |" in text
    assert "- consumers: other (`other-service`, `other.consumers.on_demo`)" in text
    assert "| `demo_id` | integer | int | yes |" in text
    assert "| `lines` | array of Line | list[Line] | yes |" in text
    assert "| `due_date` | string (date) \\| null | date \\| None | yes |" in text
    assert """| `kind` | "a" \\| "b" | Literal['a', 'b'] | no (default `"a"`) |""" in text
    # The nested model's own table; a Decimal is written as a string.
    assert "| `amount` | string | Decimal | yes |" in text


def test_a_handler_whose_topic_is_not_read_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = catalogue.Consumer("other", "other-service", [], {"demo.happened": "x.on_demo"})
    monkeypatch.setattr(catalogue, "load_producer", lambda service: demo_producer())
    monkeypatch.setattr(catalogue, "load_consumer", lambda service: consumer)

    with pytest.raises(catalogue.CatalogueError, match=r"TOPICS does not list demo\.events"):
        catalogue.load(["demo"])
