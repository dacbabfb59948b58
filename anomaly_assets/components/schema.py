"""The JSON schema of a stream's ``defs.yaml``, for editors (YAML language server) and CI.

Generated from the same model the loader validates with (components/spec.py), with every
definition at the top level so plain JSON-schema tools resolve each ``$ref``; the same schema
gives the settings reference for people (docs/stream_settings.md). Regenerate both after
changing the spec (a test fails while either is stale)::

    python -m anomaly_assets.components.schema > docs/schemas/anomaly_pipeline.schema.json
    python -m anomaly_assets.components.schema --markdown > docs/stream_settings.md
"""

import argparse
import json

from anomaly_assets.components.spec import StreamSpec

COMPONENT_TYPE = "anomaly_assets.components.anomaly_pipeline.AnomalyPipeline"


def defs_yaml_schema() -> dict:
    attributes = StreamSpec.model_json_schema()
    definitions = attributes.pop("$defs", {})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "anomaly_assets stream (defs.yaml)",
        "type": "object",
        "properties": {
            "type": {"const": COMPONENT_TYPE},
            "attributes": attributes,
        },
        "required": ["type", "attributes"],
        "additionalProperties": False,
        "$defs": definitions,
    }


def _kind(prop: dict) -> str:
    if (
        "$ref" in prop
    ):  # a model inside a list or map: its name (docs/alerts.md has them)
        return prop["$ref"].rsplit("/", 1)[-1]
    if "oneOf" in prop:
        return " or ".join(_kind(p) for p in prop["oneOf"])
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    if "anyOf" in prop:
        return " or ".join(_kind(p) for p in prop["anyOf"] if p.get("type") != "null")
    if prop.get("type") == "array":
        items = prop.get("items", {})
        return f"list of {'features' if 'enum' in items else _kind(items)}"
    if isinstance(prop.get("additionalProperties"), dict):
        return f"map of string to {_kind(prop['additionalProperties'])}"
    bounds = [
        f"{sign} {prop[key]:g}"
        for key, sign in (
            ("exclusiveMinimum", ">"),
            ("minimum", ">="),
            ("exclusiveMaximum", "<"),
            ("maximum", "<="),
        )
        if key in prop
    ]
    return " ".join([prop.get("type", "any"), *bounds])


def _default_text(name: str, prop: dict, required: set) -> str:
    if name in required:
        return "**required**"
    if "default" not in prop:
        return "its settings' defaults"
    default = prop["default"]
    if isinstance(default, list) and len(default) > 6:
        return f"all {len(default)}"
    return "unset" if default is None else f"`{json.dumps(default)}`"


def settings_markdown() -> str:
    """Every setting of a stream's defs.yaml: path, type, default, meaning."""
    schema = defs_yaml_schema()
    attributes, definitions = schema["properties"]["attributes"], schema["$defs"]
    lines = [
        "# Stream settings (`defs.yaml` attributes)",
        "",
        (
            "Generated from the spec the loader validates with "
            "(`python -m anomaly_assets.components.schema --markdown`); see "
            "[adding a stream](streams.md) for an example. Model, severity, enrichment and "
            "evaluation settings become the defaults of the stream's steps in the "
            "launchpad."
        ),
        "",
        "| setting | type | default | meaning |",
        "| --- | --- | --- | --- |",
    ]

    def rows(properties: dict, required: set, prefix: str) -> None:
        for name, prop in properties.items():
            path = f"{prefix}{name}"
            ref = prop.get("$ref", "").rsplit("/", 1)[-1]
            if ref:
                section = definitions[ref]
                lines.append(
                    f"| `{path}` | section | {_default_text(name, prop, required)} | "
                    f"{(section.get('description') or '').replace(chr(10), ' ')} |"
                )
                rows(
                    section["properties"], set(section.get("required", ())), f"{path}."
                )
                continue
            meaning = (prop.get("description") or "").replace("\n", " ")
            lines.append(
                f"| `{path}` | {_kind(prop)} | {_default_text(name, prop, required)} "
                f"| {meaning} |"
            )

    rows(attributes["properties"], set(attributes.get("required", ())), "")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="the settings reference (docs/stream_settings.md) instead of the schema",
    )
    if parser.parse_args(argv).markdown:
        print(settings_markdown(), end="")
    else:
        print(json.dumps(defs_yaml_schema(), indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
