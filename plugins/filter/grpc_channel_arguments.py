"""TF Serving's ``--grpc_channel_arguments`` flag from a mapping, as a Jinja filter.

``{'grpc.keepalive_permit_without_calls': 1} | tfsp.serving.grpc_channel_arguments`` is
``grpc.keepalive_permit_without_calls=1``. TF Serving splits the flag on "," and each entry on "=",
with no escaping, and passes a value that reads as a 32-bit integer as an integer: a name or value
holding either character, or an empty one, would reach gRPC as something else, so it is refused
here, before a host is touched. An empty mapping gives an empty string (no flag).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

NAME = re.compile(r"^[a-z][a-z0-9_.]*$")
RESERVED = re.compile(r"[,=\s]")


def grpc_channel_arguments(arguments: Mapping[str, Any] | None) -> str:
    """``key=value,...`` in the mapping's order; AnsibleFilterError on what TF Serving would misread."""
    if arguments is None:
        return ""
    if not isinstance(arguments, Mapping):
        raise AnsibleFilterError(f"grpc_channel_arguments: expected a mapping, got {arguments!r}")
    entries = []
    for name, value in arguments.items():
        if not isinstance(name, str) or not NAME.match(name):
            raise AnsibleFilterError(
                f"grpc_channel_arguments: {name!r} is not a gRPC argument name (grpc.name_ms...)"
            )
        if isinstance(value, bool):  # YAML's true/false: gRPC's switches are integers
            value = int(value)
        if not isinstance(value, (int, str)) or str(value) == "" or RESERVED.search(str(value)):
            raise AnsibleFilterError(
                f"grpc_channel_arguments: {name}: {value!r} must be an integer or a string"
                " without ',', '=' or spaces"
            )
        entries.append(f"{name}={value}")
    return ",".join(entries)


class FilterModule:
    """Ansible entry point."""

    def filters(self):
        return {"grpc_channel_arguments": grpc_channel_arguments}
