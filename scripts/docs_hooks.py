"""MkDocs hooks for the documentation site (see mkdocs.yml).

The docstrings use Sphinx roles (``:class:`X```, ``:meth:`y```), which Markdown renders
as a literal ``:class:`` followed by code. This turns each into its code, linked to the
API reference when it names a documented object (``X`` of ``dumpling_async``, or a full
dotted path), and left as plain code otherwise.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|meth|func|attr|exc|mod|data|obj):<code>~?([\w.]+)</code>")


def _ref(match: re.Match[str]) -> str:
    path = match.group(1)
    shown = path.rsplit(".", 1)[-1] if match.group(0).count("~") else path
    identifier = path if path.startswith("dumpling_async") else f"dumpling_async.{path}"
    return f'<autoref identifier="{identifier}" optional><code>{shown}</code></autoref>'


def on_page_content(html: str, **kwargs: Any) -> str:
    """Rewrite the roles left in the rendered docstrings of one page."""
    return _ROLE.sub(_ref, html)
