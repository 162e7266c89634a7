"""Writes docs/events.md, the events catalogue, from the services' own code.

A service is a folder under services/ with a pyproject.toml. What it publishes comes from its
`events.py` (TOPIC, SOURCE and EVENTS, which maps each event type to its Pydantic payload
model); what it consumes from its `consumers.py` (CONSUMER_GROUP, TOPICS and HANDLERS keyed by
event type). A service without one of those files publishes or consumes nothing.

    python scripts/events_catalogue.py            # rewrite docs/events.md (make events-doc)
    python scripts/events_catalogue.py --check    # fail when docs/events.md is stale
"""

import argparse
import difflib
import importlib
import json
import re
import sys
import tomllib
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "events.md"
# What an event type looks like ("invoice.created"); used to find constants missing in EVENTS.
EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")


class CatalogueError(Exception):
    """A service's events.py or consumers.py does not follow the convention."""


@dataclass(frozen=True)
class Producer:
    service: str
    topic: str
    source: str
    events: dict[str, type[BaseModel]]


@dataclass(frozen=True)
class Consumer:
    service: str
    group: str
    topics: list[str]
    # Event type -> the handler's dotted name.
    handlers: dict[str, str]


def find_services(root: Path = ROOT) -> list[str]:
    """The services: folders under services/ with a pyproject.toml, by name."""
    return sorted(
        folder.name
        for folder in (root / "services").iterdir()
        if (folder / "pyproject.toml").is_file()
    )


def package_of(service: str) -> str:
    """The service's Python package: the folder's name unless its pyproject names another
    (the email service's is `mailer`: `email` is the standard library's)."""
    project = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())
    backend = project.get("tool", {}).get("uv", {}).get("build-backend", {})
    return str(backend.get("module-name", service))


def import_module(service: str, name: str) -> types.ModuleType | None:
    """The service's module `name`, or None when the service has no such file."""
    package = package_of(service)
    path = ROOT / "services" / service / "src" / package / f"{name}.py"
    if not path.is_file():
        return None
    try:
        return importlib.import_module(f"{package}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == package:
            raise CatalogueError(
                f"the package {package!r} is not installed: run this with the project's "
                "virtual environment (.venv/bin/python), after `make setup`"
            ) from exc
        raise


def load_producer(service: str) -> Producer | None:
    module = import_module(service, "events")
    if module is None:
        return None
    where = f"services/{service}/src/{package_of(service)}/events.py"
    missing = [name for name in ("TOPIC", "SOURCE", "EVENTS") if not hasattr(module, name)]
    if missing:
        raise CatalogueError(
            f"{where} has no {', '.join(missing)}: an events module declares TOPIC, SOURCE and "
            "EVENTS = {EVENT_TYPE: PayloadModel, ...} (docs/architecture.md, Events)"
        )
    events = module.EVENTS
    if not isinstance(events, dict) or not all(
        isinstance(kind, str) and isinstance(model, type) and issubclass(model, BaseModel)
        for kind, model in events.items()
    ):
        raise CatalogueError(f"{where}: EVENTS must map event type strings to Pydantic models")
    # A new event-type constant left out of EVENTS would be missing here without a word.
    forgotten = sorted(
        value
        for name, value in vars(module).items()
        if name.isupper()
        and not name.endswith("TOPIC")
        and name != "SOURCE"
        and isinstance(value, str)
        and EVENT_TYPE.fullmatch(value)
        and value != module.TOPIC
        and value not in events
    )
    if forgotten:
        raise CatalogueError(
            f"{where} declares event types that EVENTS leaves out: {', '.join(forgotten)}"
        )
    return Producer(service, module.TOPIC, module.SOURCE, dict(events))


def load_consumer(service: str) -> Consumer | None:
    module = import_module(service, "consumers")
    if module is None:
        return None
    where = f"services/{service}/src/{package_of(service)}/consumers.py"
    missing = [n for n in ("CONSUMER_GROUP", "TOPICS", "HANDLERS") if not hasattr(module, n)]
    if missing:
        raise CatalogueError(f"{where} has no {', '.join(missing)}")
    handlers = {
        kind: f"{handler.__module__}.{handler.__qualname__}"
        for kind, handler in module.HANDLERS.items()
    }
    return Consumer(service, module.CONSUMER_GROUP, list(module.TOPICS), handlers)


def load(services: list[str]) -> tuple[list[Producer], list[Consumer]]:
    producers = [p for p in map(load_producer, services) if p is not None]
    consumers = [c for c in map(load_consumer, services) if c is not None]
    owner: dict[str, str] = {}
    for producer in producers:
        for kind in producer.events:
            if kind in owner:
                raise CatalogueError(
                    f"{kind} is declared by both {owner[kind]} and {producer.service}: "
                    "an event type has one producer"
                )
            owner[kind] = producer.service
    # A handler for an event whose topic the group does not read would never run.
    topic_of = {kind: p.topic for p in producers for kind in p.events}
    for consumer in consumers:
        for kind in consumer.handlers:
            if kind in topic_of and topic_of[kind] not in consumer.topics:
                raise CatalogueError(
                    f"{consumer.service}'s consumers handle {kind} but TOPICS does not list "
                    f"{topic_of[kind]}, so that handler never runs"
                )
    return producers, consumers


# --- Markdown ------------------------------------------------------------------------------


def code(text: str) -> str:
    return f"`{text}`"


def codes(items: list[str]) -> str:
    return ", ".join(map(code, items)) if items else "—"


def cell(text: str) -> str:
    """Table cell text; a bare | would end the cell."""
    return text.replace("|", "\\|")


def python_type(annotation: Any) -> str:
    """A field's Python type as written in the model, without module prefixes."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return python_type(args[0])
    if origin in (Union, types.UnionType):
        return " | ".join(python_type(arg) for arg in args)
    if origin is Literal:
        return f"Literal[{', '.join(map(repr, args))}]"
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(python_type(arg) for arg in args)}]"
    if annotation is type(None):
        return "None"
    if annotation is Ellipsis:
        return "..."
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation)


def json_type(schema: dict[str, Any]) -> str:
    """A property's JSON Schema in a few words: `string (uuid) | null`, `array of integer`."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    for combined in ("anyOf", "oneOf"):
        if combined in schema:
            return " | ".join(json_type(part) for part in schema[combined])
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return json_type(schema["allOf"][0])
    if "const" in schema:
        return json.dumps(schema["const"])
    if "enum" in schema:
        return " | ".join(json.dumps(value) for value in schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(kind)
    if kind == "array" and isinstance(schema.get("items"), dict):
        return f"array of {json_type(schema['items'])}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"object of {json_type(schema['additionalProperties'])}"
    if kind is None:
        return "any"
    if "format" in schema:
        return f"{kind} ({schema['format']})"
    if "pattern" in schema:
        return f"{kind} matching `{schema['pattern']}`"
    return str(kind)


def nested_models(model: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """The models a payload's fields use, by class name (the names of the schema's $defs)."""
    found: dict[str, type[BaseModel]] = {}

    def visit(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation.__name__ not in found:
                found[annotation.__name__] = annotation
                for field in annotation.model_fields.values():
                    visit(field.annotation)
            return
        for arg in get_args(annotation):
            visit(arg)

    for field in model.model_fields.values():
        visit(field.annotation)
    return found


def fields_table(schema: dict[str, Any], model: type[BaseModel] | None) -> list[str]:
    properties: dict[str, Any] = schema.get("properties", {})
    if not properties:
        return ["No fields."]
    required = set(schema.get("required", []))
    described = any("description" in prop for prop in properties.values())
    header = "| field | JSON type | Python type | required |" + (" meaning |" if described else "")
    lines = [header, "|---|---|---|---|" + ("---|" if described else "")]
    for name, prop in properties.items():
        field = model.model_fields.get(name) if model is not None else None
        python = python_type(field.annotation) if field is not None else "—"
        if name in required:
            needed = "yes"
        elif "default" in prop:
            needed = f"no (default {code(json.dumps(prop['default']))})"
        else:
            needed = "no"
        row = f"| {code(name)} | {cell(json_type(prop))} | {cell(python)} | {needed} |"
        if described:
            row += f" {cell(str(prop.get('description', '')))} |"
        lines.append(row)
    return lines


def event_section(
    kind: str,
    producer: Producer,
    model: type[BaseModel],
    consumers: list[Consumer],
    same_as: str | None,
) -> list[str]:
    """One event type; its payload's tables unless an earlier type (same_as) showed them."""
    handled_by = [
        f"{c.service} ({code(c.group)}, {code(c.handlers[kind])})"
        for c in consumers
        if kind in c.handlers
    ]
    lines = [
        f"### {code(kind)}",
        "",
        f"- topic: {code(producer.topic)}",
        f"- producer: {producer.service} (source {code(producer.source)})",
        f"- payload: {code(f'{model.__module__}.{model.__qualname__}')}",
        f"- consumers: {', '.join(handled_by) if handled_by else '—'}",
        "",
    ]
    if same_as is not None:
        return [*lines, f"The payload is the same as {code(same_as)}'s, above.", ""]
    # Serialization mode: the payload as it is on the wire (a Decimal is a JSON string).
    schema = model.model_json_schema(mode="serialization")
    if schema.get("description"):
        lines += [schema["description"], ""]
    lines += fields_table(schema, model)
    nested = nested_models(model)
    for name, definition in schema.get("$defs", {}).items():
        lines += ["", f"{code(name)}:", ""]
        lines += fields_table(definition, nested.get(name))
    lines += [
        "",
        "<details><summary>JSON Schema</summary>",
        "",
        "```json",
        json.dumps(schema, indent=2),
        "```",
        "",
        "</details>",
        "",
    ]
    return lines


def render(producers: list[Producer], consumers: list[Consumer]) -> str:
    """The whole of docs/events.md."""
    lines = [
        "# Events catalogue",
        "",
        "<!-- Generated by scripts/events_catalogue.py from each service's events.py and",
        "     consumers.py. Do not edit: `make events-doc` rewrites it, and `make test` fails",
        "     when it is stale. -->",
        "",
        "Every event travels in a CloudEvents 1.0 envelope (`common.events.CloudEvent`) whose",
        "`subject`, also the Kafka message key, is the owner's user id. The tables describe the",
        "envelope's `data` as the producer writes it: the JSON Schema of the payload model in",
        "serialization mode (so a `Decimal` amount is a JSON string). A consumer reads only the",
        "fields it needs. How services declare what they publish and consume:",
        "[architecture.md](architecture.md#events).",
        "",
        "## Topics",
        "",
        "| topic | producer | event types | read by (consumer group) |",
        "|---|---|---|---|",
    ]
    for producer in sorted(producers, key=lambda p: p.topic):
        readers = [
            f"{c.service} ({code(c.group)})" for c in consumers if producer.topic in c.topics
        ]
        lines.append(
            f"| {code(producer.topic)} | {producer.service} | {codes(sorted(producer.events))} "
            f"| {', '.join(readers) if readers else '—'} |"
        )
    lines += [
        "",
        "## Consumer groups",
        "",
        "Each group's failed events go, after its retries (none for data that does not fit the "
        "handler's model), to its dead-letter topic.",
        "",
        "| group | service | topics | event types handled | dead-letter topic |",
        "|---|---|---|---|---|",
    ]
    for consumer in sorted(consumers, key=lambda c: c.group):
        dead_letters = code(f"{consumer.group}.dlt") if consumer.topics else "—"
        lines.append(
            f"| {code(consumer.group)} | {consumer.service} | {codes(consumer.topics)} "
            f"| {codes(sorted(consumer.handlers))} | {dead_letters} |"
        )
    lines += ["", "## Event types", ""]
    by_kind = {kind: p for p in producers for kind in p.events}
    shown: dict[type[BaseModel], str] = {}
    for kind in sorted(by_kind):
        producer = by_kind[kind]
        model = producer.events[kind]
        lines += event_section(kind, producer, model, consumers, shown.get(model))
        shown.setdefault(model, kind)
    orphans = sorted({kind for c in consumers for kind in c.handlers} - by_kind.keys())
    if orphans:
        lines += [
            "## Consumed, with no producer yet",
            "",
            "Handlers waiting for a service that does not publish yet.",
            "",
            "| event type | consumers |",
            "|---|---|",
        ]
        for kind in orphans:
            handled_by = [f"{c.service} ({code(c.group)})" for c in consumers if kind in c.handlers]
            lines.append(f"| {code(kind)} | {', '.join(handled_by)} |")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--check", action="store_true", help="fail when the file differs from what would be written"
    )
    parser.add_argument("--output", type=Path, default=OUTPUT, help="default: docs/events.md")
    args = parser.parse_args(argv)
    try:
        text = render(*load(find_services()))
    except CatalogueError as exc:
        print(f"events catalogue: {exc}", file=sys.stderr)
        return 1
    output: Path = args.output
    if args.check:
        current = output.read_text() if output.is_file() else ""
        if current == text:
            return 0
        diff = difflib.unified_diff(
            current.splitlines(keepends=True),
            text.splitlines(keepends=True),
            fromfile=f"{output} (as it is)",
            tofile=f"{output} (from the code)",
            n=1,
        )
        sys.stderr.writelines(list(diff)[:60])
        print(
            f"\n{output} is stale: the services' events.py or consumers.py changed. "
            "Run `make events-doc` and commit the result.",
            file=sys.stderr,
        )
        return 1
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
