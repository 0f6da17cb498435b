"""A tiny stand-in for the Hugging Face Hub's HTTP API, on 127.0.0.1, for tests without network.

It answers the calls that huggingface_hub (2.x) makes for `create_repo`, `create_commit`
(preupload, then an ndjson commit with every file inline: it always answers "regular", so
no LFS or Xet upload is ever asked for), `repo_info` / `model_info`, `list_repo_tree` and
file downloads (`HEAD`/`GET .../resolve/REV/FILE` with ETag and X-Repo-Commit), which is
all that `snapshot_download` needs.

    with FakeHub() as hub:           # serving on hub.url in a thread
        env = {"HF_ENDPOINT": hub.url, ...}
        ...
        hub.files("user/repo")       # {path: bytes} at the head of main
        hub.requests                 # [(method, path, headers)] as received

Only model repos and the main branch (or a commit sha) are supported.
"""

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

_REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"
_REV = r"(?P<rev>[^/]+)"


def git_blob_sha(data: bytes) -> str:
    """The git object id of a file: what the Hub reports as a regular file's oid and ETag."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    def __init__(self):
        self.repos: dict[str, list[dict]] = {}  # repo id -> commits, oldest first: {"oid", "files"}
        self.requests: list[tuple[str, str, dict]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = None

    # ---- lifecycle ----

    def start(self) -> "FakeHub":
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the port: a client then gets 'connection refused'."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- what the tests look at ----

    def files(self, repo_id: str, rev: str = "main") -> dict[str, bytes]:
        return dict(self._commit(repo_id, rev)["files"])

    def _commit(self, repo_id: str, rev: str) -> dict | None:
        commits = self.repos.get(repo_id)
        if not commits:
            return None
        if rev == "main":
            return commits[-1]
        return next((c for c in commits if c["oid"] == rev), None)

    # ---- the API ----

    def handle(self, method: str, path: str, headers: dict, body: bytes):
        """-> (status, headers, body bytes or JSON-able object)."""
        with self._lock:
            self.requests.append((method, path, headers))
            if method == "POST" and path == "/api/repos/create":
                return self._create_repo(json.loads(body))
            if method == "POST" and path == "/api/validate-yaml":
                return 200, {}, {"errors": [], "warnings": []}
            if m := re.fullmatch(rf"/api/models/{_REPO}/preupload/{_REV}", path):
                return self._preupload(m["repo"], m["rev"], json.loads(body))
            if m := re.fullmatch(rf"/api/models/{_REPO}/commit/{_REV}", path):
                return self._create_commit(m["repo"], m["rev"], body)
            if m := re.fullmatch(rf"/api/models/{_REPO}(?:/revision/{_REV})?", path):
                return self._model_info(m["repo"], m["rev"] or "main")
            if m := re.fullmatch(rf"/api/models/{_REPO}/tree/{_REV}(?:/(?P<sub>.*))?", path):
                return self._tree(m["repo"], m["rev"], m["sub"] or "")
            if m := re.fullmatch(rf"/{_REPO}/resolve/{_REV}/(?P<file>.+)", path):
                return self._resolve(m["repo"], m["rev"], m["file"], head=method == "HEAD")
            return 404, {}, {"error": f"fake hub: no route for {method} {path}"}

    def _missing(self, repo_id: str, rev: str):
        if repo_id not in self.repos:
            return 404, {"X-Error-Code": "RepoNotFound"}, {"error": "Repository not found"}
        return 404, {"X-Error-Code": "RevisionNotFound"}, {"error": f"Invalid rev id: {rev}"}

    def _create_repo(self, payload: dict):
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        if repo_id in self.repos:
            return 409, {}, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"}
        gitattributes = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
        self.repos[repo_id] = [{"oid": hashlib.sha1(repo_id.encode()).hexdigest(),
                                "files": {".gitattributes": gitattributes}}]
        return 200, {}, {"url": f"{self.url}/{repo_id}", "name": repo_id, "id": repo_id}

    def _preupload(self, repo_id: str, rev: str, payload: dict):
        head = self._commit(repo_id, rev)
        if head is None:
            return self._missing(repo_id, rev)
        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                  "oid": git_blob_sha(head["files"][f["path"]]) if f["path"] in head["files"] else None}
                 for f in payload["files"]]
        return 200, {}, {"files": files, "commitOid": head["oid"]}

    def _create_commit(self, repo_id: str, rev: str, body: bytes):
        head = self._commit(repo_id, rev)
        if head is None or rev != "main":
            return self._missing(repo_id, rev)
        files = dict(head["files"])
        summary = ""
        for line in body.decode().splitlines():
            item = json.loads(line)
            value = item["value"]
            if item["key"] == "header":
                summary = value["summary"]
            elif item["key"] == "file" and value.get("encoding") == "base64":
                files[value["path"]] = base64.b64decode(value["content"])
            elif item["key"] == "deletedFile":
                files.pop(value["path"], None)
            else:
                return 400, {}, {"error": f"fake hub: unsupported commit operation {item['key']}"}
        oid = hashlib.sha1(json.dumps([head["oid"], summary, sorted(
            (p, git_blob_sha(d)) for p, d in files.items())]).encode()).hexdigest()
        self.repos[repo_id].append({"oid": oid, "files": files})
        return 200, {}, {"commitUrl": f"{self.url}/{repo_id}/commit/{oid}", "commitOid": oid,
                         "pullRequestUrl": None, "success": True}

    def _model_info(self, repo_id: str, rev: str):
        commit = self._commit(repo_id, rev)
        if commit is None:
            return self._missing(repo_id, rev)
        return 200, {}, {"id": repo_id, "modelId": repo_id, "sha": commit["oid"], "private": False,
                         "siblings": [{"rfilename": p} for p in sorted(commit["files"])], "tags": []}

    def _tree(self, repo_id: str, rev: str, sub: str):
        commit = self._commit(repo_id, rev)
        if commit is None:
            return self._missing(repo_id, rev)
        prefix = f"{sub.rstrip('/')}/" if sub else ""
        entries = [{"type": "file", "path": p, "size": len(d), "oid": git_blob_sha(d)}
                   for p, d in sorted(commit["files"].items()) if p.startswith(prefix)]
        return 200, {}, entries

    def _resolve(self, repo_id: str, rev: str, filename: str, head: bool):
        commit = self._commit(repo_id, rev)
        if commit is None:
            return self._missing(repo_id, rev)
        headers = {"X-Repo-Commit": commit["oid"]}
        if filename not in commit["files"]:
            return 404, dict(headers, **{"X-Error-Code": "EntryNotFound"}), {"error": "Entry not found"}
        data = commit["files"][filename]
        headers.update({"ETag": f'"{git_blob_sha(data)}"', "Content-Type": "application/octet-stream",
                        "Accept-Ranges": "bytes"})
        return 200, headers, data


def _handler_for(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the client expects; every answer has a Content-Length

        def _serve(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path = unquote(urlsplit(self.path).path)
            try:
                status, headers, payload = hub.handle(self.command, path, dict(self.headers), body)
            except Exception as e:  # a bug here should read as a 500, not hang the client
                status, headers, payload = 500, {}, {"error": f"fake hub: {type(e).__name__}: {e}"}
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            if not isinstance(payload, bytes):
                headers.setdefault("Content-Type", "application/json")
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, *args):  # quiet
            pass

    return Handler
