"""Writes the generated spec.config schema into the Runner CRD file, in place between two marker comments.

Text surgery rather than a YAML round trip: the rest of the CRD stays hand-written (comments, flow style), so
edits to other fields merge as usual. `scripts/gen-runner-crd.py` (`make crds`) runs it; a unit test fails when the
committed CRD differs from what it would write.
"""

from __future__ import annotations

import yaml

from glrt_operator.runner_config.keys import source
from glrt_operator.runner_config.schema import spec_config_schema

BEGIN = "# BEGIN generated spec.config"
END = "# END generated spec.config"
INDENT = 16  # spec.versions[].schema.openAPIV3Schema.properties.spec.properties.config


def config_block() -> str:
    """The `config:` property of the spec schema, indented for the CRD file, between the markers."""
    pad = " " * INDENT
    body = yaml.safe_dump(
        {"config": spec_config_schema(descriptions="short")},
        sort_keys=False,
        default_flow_style=None,
        width=120,
        allow_unicode=True,
    )
    src = source()
    lines = [
        f"{pad}{BEGIN} by scripts/gen-runner-crd.py from runner_config/keys.json",
        f"{pad}# (gitlab-runner {src['runner_version']}): do not edit by hand, run `make crds`.",
        *(f"{pad}{line}" if line else line for line in body.splitlines()),
        f"{pad}{END}",
    ]
    return "\n".join(lines) + "\n"


def with_generated_config(crd_text: str) -> str:
    """The CRD text with the block between the markers replaced by `config_block()`."""
    lines = crd_text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.strip().startswith(BEGIN)]
    ends = [i for i, line in enumerate(lines) if line.strip().startswith(END)]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise ValueError(f"the CRD must hold exactly one {BEGIN!r} ... {END!r} block")
    return "".join(lines[: starts[0]]) + config_block() + "".join(lines[ends[0] + 1 :])
