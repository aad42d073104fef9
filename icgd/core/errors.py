"""The one exception type for bad user input (config, CLI flag, file).

The CLI turns it into a one-line message and exit code 2; anything else is a bug.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from the user: a config field, a CLI flag or a file.

    `field` names what was wrong (a dotted config path, a flag or a path) and the message says
    what is allowed, so the CLI can print ``error: <field>: <message>`` on one line.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")
