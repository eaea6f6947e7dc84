"""The web UI: static files under /ui (package data) and a redirect from /."""
from __future__ import annotations

import pathlib

from fastapi import FastAPI
from starlette.responses import RedirectResponse
from starlette.staticfiles import StaticFiles

# The web UI's static files; served under /ui, open even with an API key (no secrets there:
# the page asks for the key and sends it with each API call).
UI_DIR = pathlib.Path(__file__).resolve().with_name('ui')


def ui_paths() -> tuple[str, ...]:
    """Paths open without the API key: /health and the UI's static files (no secrets)."""
    files = sorted(f'/ui/{p.name}' for p in UI_DIR.iterdir() if p.is_file()) \
        if UI_DIR.is_dir() else []
    return ('/health', '/', '/ui', '/ui/', *files)


def mount_ui(app: FastAPI) -> None:
    """Serve the UI under /ui and redirect / to it (nothing when the files are missing)."""
    if not UI_DIR.is_dir():
        return
    app.mount('/ui', StaticFiles(directory=UI_DIR, html=True), name='ui')

    @app.get('/', include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse('/ui/')
