"""A private package index for the options scenario: PEP 503 "simple" pages of
the wheels in a directory, behind HTTP basic auth, on 127.0.0.1 only.

    python3 index_server.py DIRECTORY PORT PASSWORD_FILE

DIRECTORY holds one subdirectory per project (normalised name) with its
wheels; the user is `shop`, the password the first word of PASSWORD_FILE.
A request without the right credentials gets 401, so a host that installs
from here proves it used the credentials of celery_workers_pip_index_url.
"""

import base64
import html
import http.server
import pathlib
import sys

ROOT = pathlib.Path(sys.argv[1]).resolve()
PORT = int(sys.argv[2])
PASSWORD = pathlib.Path(sys.argv[3]).read_text().split()[0]
EXPECTED = "Basic " + base64.b64encode(f"shop:{PASSWORD}".encode()).decode()


class Index(http.server.BaseHTTPRequestHandler):
    def _send(self, status, body=b"", kind="text/html"):
        self.send_response(status)
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="options index"')
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802  pylint: disable=invalid-name
        if self.headers.get("Authorization") != EXPECTED:
            self._send(401, b"credentials required\n", "text/plain")
            return
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        if parts[:1] != ["simple"]:
            self._send(404)
        elif len(parts) == 1:
            links = "".join(f'<a href="/simple/{d.name}/">{d.name}</a>\n' for d in sorted(ROOT.iterdir()) if d.is_dir())
            self._send(200, f"<html><body>\n{links}</body></html>\n".encode())
        elif len(parts) == 2 and (ROOT / parts[1]).is_dir():
            links = "".join(f'<a href="/simple/{parts[1]}/{html.escape(f.name)}">{html.escape(f.name)}</a>\n'
                            for f in sorted((ROOT / parts[1]).glob("*.whl")))
            self._send(200, f"<html><body>\n{links}</body></html>\n".encode())
        elif len(parts) == 3 and (ROOT / parts[1] / parts[2]).is_file() and parts[2].endswith(".whl"):
            self._send(200, (ROOT / parts[1] / parts[2]).read_bytes(), "application/octet-stream")
        else:
            self._send(404)

    def log_message(self, *args):  # quiet
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Index).serve_forever()
