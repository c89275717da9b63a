"""Text from the core, made readable in plain-text labels.

The core writes commands in hints between backticks (``Run `toolbox start default`.``), which
reads well in a terminal; labels show them in typographic quotes instead.
"""

from __future__ import annotations

import re

_CODE = re.compile(r"`([^`\n]+)`")


def readable(text: str | None) -> str:
    """``text`` with every `code` span shown as “code”; None becomes ""."""
    return _CODE.sub(r"“\1”", text or "")
