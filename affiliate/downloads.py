"""File downloads served by the portal."""

from __future__ import annotations

from flask import Response


def csv_download(text: str, filename: str) -> Response:
    """A CSV attachment; ``filename`` is ours (ASCII, no quotes), never user input."""
    return Response(
        text,
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
