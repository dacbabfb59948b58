"""The JSON schema of a stream's ``defs.yaml``, for editors (YAML language server) and CI.

Generated from the same model the loader validates with (components/spec.py), with every
definition at the top level so plain JSON-schema tools resolve each ``$ref``. Regenerate
after changing the spec: ``python -m anomaly_assets.components.schema >
docs/schemas/anomaly_pipeline.schema.json`` (a test fails while the file is stale).
"""

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


def main() -> None:
    print(json.dumps(defs_yaml_schema(), indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
