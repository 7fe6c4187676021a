"""Open the Embedding Atlas of this export in your web browser (double-click the launcher next to this file).

The Atlas is a static web application in ``app/``; browsers refuse to run it from ``file://``, so this
script serves ``app/`` on this computer only (http://127.0.0.1, a free port) and opens the browser on it.
Nothing leaves the computer. Close this window (or press Ctrl+C) to stop it.

Needs only Python 3.8 or newer (standard library). Copied by cxr-fusion into every Atlas export as
``open_atlas.py``; the launchers ``Open Atlas (Windows).bat``, ``Open Atlas (macOS).command`` and
``open_atlas.sh`` (Linux) run it.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import sys
import threading
import webbrowser
from pathlib import Path

MIME = {".wasm": "application/wasm", ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
        ".json": "application/json", ".parquet": "application/octet-stream", ".html": "text/html"}


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **MIME}

    def log_message(self, format: str, *args: object) -> None:   # quiet: one line per request is noise
        pass


def serve(app: Path, *, port: int = 0) -> http.server.ThreadingHTTPServer:
    """A server for ``app`` on 127.0.0.1 (``port`` 0: any free port), not yet started."""
    if not (app / "index.html").is_file():
        raise FileNotFoundError(f"no Atlas application in {app} (index.html missing); was the export copied whole?")
    handler = functools.partial(_Handler, directory=str(app))
    return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)


def main(argv: list[str] | None = None) -> int:
    """Serve ``app/`` next to this file and open the browser; runs until interrupted."""
    ap = argparse.ArgumentParser(prog="open_atlas.py", description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    ap.add_argument("--no-browser", action="store_true", help="only serve; print the address")
    args = ap.parse_args(argv)
    try:
        server = serve(Path(__file__).resolve().parent / "app", port=args.port)
    except (FileNotFoundError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
    print(f"Embedding Atlas: {url}\n(keep this window open while you use it; close it or press Ctrl+C to stop)",
          flush=True)
    if not args.no_browser:
        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
