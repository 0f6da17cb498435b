"""A tiny stand-in for the Hugging Face Hub's HTTP API, on 127.0.0.1, for tests without network.

It answers the calls that huggingface_hub (2.x) makes for `create_repo`, `create_commit`,
`repo_info` / `model_info`, `list_repo_tree` and file downloads, which is all that
`snapshot_download` needs. Uploads take the two ways the Hub's take:

- preupload answers, per file, "regular" or "lfs", as the Hub decides: LFS for a path that
  .gitattributes marks `filter=lfs` (`*.safetensors`), for binary content (a NUL byte in the
  sample the client sends: `.png`), and for 10 MiB or more;
- an LFS file then goes through the LFS batch API (`POST REPO.git/info/lfs/objects/batch`,
  answered with an upload and a verify action, or none for content already stored), a `PUT`
  of its bytes to the storage URL, the verify call, and enters the commit as an `lfsFile`
  entry (its sha256 and size), not inline;
- a download of an LFS file is redirected to storage, as the Hub redirects to its CDN, with
  the file's sha256 and size in X-Linked-Etag and X-Linked-Size.

Storage is this server under another host name (`localhost` rather than 127.0.0.1), so the
client treats it as off the Hub and sends it no token, as it would to S3 or a CDN. What this
does not cover: Xet storage (the tests set HF_HUB_DISABLE_XET=1, which the real client
honours too) and multipart uploads (the Hub asks for them only for large files).

    with FakeHub() as hub:           # serving on hub.url in a thread
        env = {"HF_ENDPOINT": hub.url, ...}
        ...
        hub.files("user/repo")       # {path: bytes} at the head of main
        hub.lfs_paths("user/repo")   # the paths of those that were uploaded the LFS way
        hub.requests                 # [(method, host, path, headers)] as received
        hub.fail = 401               # from now on, every request is answered with this error

Only model repos and the main branch (or a commit sha) are supported.
"""

import base64
import fnmatch
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


def lfs_pointer(data: bytes) -> bytes:
    """The small file that git keeps in place of an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\n" \
           f"size {len(data)}\n".encode()


LFS_MIN_SIZE = 10 * 2**20  # the Hub stores anything this large with LFS
# What the Hub says for a token it does not know (X-Error-Message); the client tells it from a private repo's 401.
BAD_TOKEN = "Invalid credentials in Authorization header"


class FakeHub:
    def __init__(self):
        self.repos: dict[str, list[dict]] = {}  # repo id -> commits, oldest first: {"oid", "files", "lfs"}
        self.storage: dict[str, bytes] = {}  # LFS objects by sha256, as uploaded
        self.requests: list[tuple[str, str, str, dict]] = []
        self.fail: int | None = None  # when set, the status every request is answered with
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{port}"
        self.storage_url = f"http://localhost:{port}/lfs-storage"  # "another host": the client sends it no token
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

    def lfs_paths(self, repo_id: str, rev: str = "main") -> set[str]:
        return set(self._commit(repo_id, rev)["lfs"])

    def _commit(self, repo_id: str, rev: str) -> dict | None:
        commits = self.repos.get(repo_id)
        if not commits:
            return None
        if rev == "main":
            return commits[-1]
        return next((c for c in commits if c["oid"] == rev), None)

    # ---- the API ----

    def handle(self, method: str, host: str, path: str, headers: dict, body: bytes):
        """-> (status, headers, body bytes or JSON-able object)."""
        with self._lock:
            self.requests.append((method, host, path, headers))
            if self.fail is not None:
                return self._error(self.fail)
            if m := re.fullmatch(r"/lfs-storage/(?P<oid>[0-9a-f]{64})", path):
                return self._storage(method, m["oid"], body)
            if m := re.fullmatch(rf"/{_REPO}\.git/info/lfs/objects/batch", path):
                return self._lfs_batch(m["repo"], json.loads(body))
            if m := re.fullmatch(rf"/{_REPO}\.git/info/lfs/objects/verify", path):
                return self._lfs_verify(json.loads(body))
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

    def _error(self, status: int):
        """An error as the Hub words it: a token it does not know, no rights, or a server error."""
        message = {401: BAD_TOKEN, 403: "You don't have the rights to access this resource"}.get(
            status, "Internal Error - We're working hard to fix this as soon as possible!")
        return status, {"X-Error-Message": message}, {"error": message}

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
                                "files": {".gitattributes": gitattributes}, "lfs": set()}]
        return 200, {}, {"url": f"{self.url}/{repo_id}", "name": repo_id, "id": repo_id}

    def _preupload(self, repo_id: str, rev: str, payload: dict):
        head = self._commit(repo_id, rev)
        if head is None:
            return self._missing(repo_id, rev)
        files = []
        for f in payload["files"]:
            path, known = f["path"], head["files"].get(f["path"])
            lfs = self._goes_to_lfs(head, path, base64.b64decode(f["sample"]), f["size"])
            # The oid of what is there now, as the client computes it for the mode: it skips an unchanged file.
            oid = None if known is None else hashlib.sha256(known).hexdigest() if lfs else git_blob_sha(known)
            files.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                          "oid": oid})
        return 200, {}, {"files": files, "commitOid": head["oid"]}

    @staticmethod
    def _goes_to_lfs(head: dict, path: str, sample: bytes, size: int) -> bool:
        """As the Hub decides: .gitattributes says so, the content is binary, or the file is large."""
        patterns = [line.split()[0] for line in head["files"].get(".gitattributes", b"").decode().splitlines()
                    if "filter=lfs" in line.split()[1:]]
        name = path.rsplit("/", 1)[-1]
        marked = any(fnmatch.fnmatchcase(path if "/" in pattern else name, pattern) for pattern in patterns)
        return marked or b"\0" in sample or size >= LFS_MIN_SIZE

    def _lfs_batch(self, repo_id: str, payload: dict):
        if repo_id not in self.repos:
            return self._missing(repo_id, "main")
        if payload.get("operation") != "upload" or "basic" not in payload.get("transfers", ["basic"]):
            return 400, {}, {"message": f"fake hub: unsupported LFS batch request {payload}"}
        objects = []
        for obj in payload["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.storage:  # no actions: stored already, nothing to upload
                entry["actions"] = {
                    "upload": {"href": f"{self.storage_url}/{obj['oid']}", "header": {}},
                    "verify": {"href": f"{self.url}/{repo_id}.git/info/lfs/objects/verify", "header": {}}}
            objects.append(entry)
        return 200, {"Content-Type": "application/vnd.git-lfs+json"}, {"transfer": "basic", "objects": objects}

    def _storage(self, method: str, oid: str, body: bytes):
        """The storage host: PUT an object (checked against its sha256), or GET / HEAD it."""
        if method == "PUT":
            if hashlib.sha256(body).hexdigest() != oid:
                return 400, {}, {"error": "fake storage: the content does not match its sha256"}
            self.storage[oid] = body
            return 200, {"ETag": f'"{hashlib.md5(body).hexdigest()}"'}, b""
        if oid not in self.storage:
            return 404, {}, {"error": "fake storage: no such object"}
        return 200, {"ETag": f'"{oid}"', "Content-Type": "application/octet-stream"}, self.storage[oid]

    def _lfs_verify(self, payload: dict):
        data = self.storage.get(payload["oid"])
        if data is None or len(data) != payload["size"]:
            return 404, {}, {"error": f"fake hub: LFS object {payload['oid']} was not uploaded"}
        return 200, {}, {"success": True}

    def _create_commit(self, repo_id: str, rev: str, body: bytes):
        head = self._commit(repo_id, rev)
        if head is None or rev != "main":
            return self._missing(repo_id, rev)
        files, lfs = dict(head["files"]), set(head["lfs"])
        summary = ""
        for line in body.decode().splitlines():
            item = json.loads(line)
            value = item["value"]
            if item["key"] == "header":
                summary = value["summary"]
            elif item["key"] == "file" and value.get("encoding") == "base64":
                files[value["path"]] = base64.b64decode(value["content"])
                lfs.discard(value["path"])
            elif item["key"] == "lfsFile" and value.get("algo") == "sha256":
                data = self.storage.get(value["oid"])
                if data is None or len(data) != value.get("size", len(data)):
                    return 422, {}, {"error": f"fake hub: {value['path']}: LFS object {value['oid']} not uploaded"}
                files[value["path"]] = data
                lfs.add(value["path"])
            elif item["key"] == "deletedFile":
                files.pop(value["path"], None)
                lfs.discard(value["path"])
            else:
                return 400, {}, {"error": f"fake hub: unsupported commit operation {item['key']}"}
        oid = hashlib.sha1(json.dumps([head["oid"], summary, sorted(
            (p, git_blob_sha(d)) for p, d in files.items())]).encode()).hexdigest()
        self.repos[repo_id].append({"oid": oid, "files": files, "lfs": lfs})
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
        entries = []
        for p, d in sorted(commit["files"].items()):
            if not p.startswith(prefix):
                continue
            if p in commit["lfs"]:  # git holds the pointer; its oid is the pointer's
                pointer = lfs_pointer(d)
                entries.append({"type": "file", "path": p, "size": len(d), "oid": git_blob_sha(pointer),
                                "lfs": {"oid": hashlib.sha256(d).hexdigest(), "size": len(d),
                                        "pointerSize": len(pointer)}})
            else:
                entries.append({"type": "file", "path": p, "size": len(d), "oid": git_blob_sha(d)})
        return 200, {}, entries

    def _resolve(self, repo_id: str, rev: str, filename: str, head: bool):
        commit = self._commit(repo_id, rev)
        if commit is None:
            return self._missing(repo_id, rev)
        headers = {"X-Repo-Commit": commit["oid"]}
        if filename not in commit["files"]:
            return 404, dict(headers, **{"X-Error-Code": "EntryNotFound"}), {"error": "Entry not found"}
        data = commit["files"][filename]
        if filename in commit["lfs"]:  # to storage, as the Hub sends to its CDN, with what the client checks
            sha = hashlib.sha256(data).hexdigest()
            headers.update({"Location": f"{self.storage_url}/{sha}", "X-Linked-Etag": f'"{sha}"',
                            "X-Linked-Size": str(len(data)), "ETag": f'"{git_blob_sha(lfs_pointer(data))}"'})
            return 302, headers, b""
        headers.update({"ETag": f'"{git_blob_sha(data)}"', "Content-Type": "application/octet-stream",
                        "Accept-Ranges": "bytes"})
        return 200, headers, data


def _handler_for(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the client expects; every answer has a Content-Length

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":  # an upload from a file object
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()  # the CRLF after each chunk
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers, then the blank line
                    pass
                return b"".join(chunks)
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _serve(self):
            body = self._body()
            path = unquote(urlsplit(self.path).path)
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
            try:
                status, headers, payload = hub.handle(self.command, host, path, dict(self.headers), body)
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
