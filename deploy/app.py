"""A local web page: draw a box, click points, see SAM's mask beside SAMA's mask and matte, take the
cutout.

    python -m deploy.app [--checkpoint weights/sama_standin.pt] [--sam-checkpoint ...] [--port 8000]

serves app.html on http://127.0.0.1:PORT/ (the loopback address only; --port 0 takes a free port)
and prints the address. Pick one of the benchmark's test images (written by synthetic.py into
--examples on first use) or upload your own; drag a box, click points (shift-click: the other
label); the page shows SAM's mask, SAMA's mask and SAMA's alpha side by side, and downloads the
mask, the alpha and the RGBA cutout (its colours the estimated foreground, foreground.py): the
bytes predict.py writes for the same image and prompt.

Each image is encoded once (set_image: SAMA's five views); a prompt runs the decoders only. The page
shows both times. Every browser tab is a session of its own (its id is made by the page), holding
its image and its encoder features; the last MAX_TABS sessions used are kept. The model runs one
call at a time (a lock); a prompt that a newer one of the same tab overtook while it waited is
dropped, and the page shows only the answer to the latest prompt it sent (sequence numbers).

Refused in JSON: a Host other than the page's (DNS rebinding) and a request whose Origin is not
the page's own (another site's page driving the local model), 403; a method other than GET, HEAD
and POST, 405; a body that stops arriving for READ_TIMEOUT seconds, 408 (the connection closed).
A client that goes away before its answer is dropped quietly.

The JSON API (app.html is its one client); every error is {"error": one line}, never a traceback:
    GET  /api/examples                      [{"file", "split", "kind"}]
    POST /api/image?session=S&example=F     the tab's image: an example ...
    POST /api/image?session=S&name=N        ... or the uploaded file (the request's body)
                                            -> {"image", "name", "width", "height", "set_image_ms"}
    GET  /api/image?session=S&image=I       the image as the model sees it (EXIF applied), a PNG
    POST /api/prompt  {"session", "image", "seq", "box": [x0, y0, x1, y1] or null,
                       "points": [[x, y], ...], "labels": [1 or 0, ...]}
                                            -> {"seq", "prompt_ms", "cutout_ms", "sam", "mask",
                                               "alpha", "cutout"} (PNG data URLs; "notice": a box
                                               partly outside the image, clipped) or {"seq",
                                               "superseded": true}
    GET  /api/download?session=S&seq=Q&name=mask|alpha|cutout   predict.py's PNG for prompt Q
    POST /api/everything  {"session", "image"}  every object of the tab's image (predictor.py: SAM
                                            finds them, SAMA refines each from its box)
                                            -> {"image", "everything_ms", "settings", "objects":
                                               [{"box", "predicted_iou", "stability_score",
                                               "mask"}]} (mask: a PNG data URL; [] if none)
    GET  /api/object?session=S&image=I&index=K&name=mask|alpha|cutout   object K's PNG, as
                                            predict.py --everything writes it
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import math
import re
import sys
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional
from urllib.parse import parse_qs, urlsplit

import numpy as np
import torch
from PIL import Image

import readers
from frame import NonFiniteOutput, PromptError, check_prompt, output_images, png_bytes
from load_sam_weights import STANDIN_SAM, STANDIN_SAMA, CheckpointError, load_sama
from miniature import synthetic
from outputs import OptionError, run_main
from predictor import Predictor, SettingsError, box_text, find_objects, refine, settings_for

PAGE = Path(__file__).with_name("app.html")
HOST = "127.0.0.1"  # the loopback address: no other machine can reach the page
MAX_UPLOAD_MB = 32  # an upload's size; a 4096 x 4096 photo is well under it
MAX_SIDE = 4096  # an image's longest side, in pixels: the frame is 1024 (stand-in: 256) anyway
MAX_PROMPT_BYTES = 64 * 1024  # a prompt's JSON
READ_TIMEOUT = 30  # seconds a connection may be silent: an idle keep-alive, or a stalled body
MAX_POINTS = 64
MAX_TABS = 8  # sessions kept (each holds its image's encoder features), the least recently used go
EXAMPLES_PER_KIND = 2  # test images of each thin-structure and matte kind
OUTPUTS = ("mask", "alpha", "cutout")
SESSION_ID = re.compile(r"[A-Za-z0-9-]{8,64}")


class RequestError(Exception):
    """A request the app refuses; the message (one line) is shown on the page."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Tab:
    """One browser tab's image, its encoder features (in `predictor`) and its latest answer."""

    image_id: int
    name: str  # the image's file name; downloads are named as predict.py names its outputs
    image: np.ndarray  # (H, W, 3) uint8, as readers.load_image gives it
    predictor: Predictor
    latest_seq: int = -1  # the newest prompt received: older ones still waiting are dropped
    answer_seq: int = -1  # the prompt whose outputs are kept for download
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    objects: list[dict[str, np.ndarray]] = field(default_factory=list)  # every object's outputs


class App:
    """The model, the tabs' sessions and the examples; the handler's requests call its methods."""

    def __init__(self, checkpoint, sam_checkpoint, examples: Path,
                 max_upload_mb: float = MAX_UPLOAD_MB, max_side: int = MAX_SIDE) -> None:
        device = "cuda" if torch.cuda.is_available() else "cpu"  # as predict.py picks it
        # each tab's Predictor(self.model) reads its tasks and threshold from the file's record
        self.model = load_sama(checkpoint, sam_checkpoint, device=device)
        self.device = torch.device(device)
        self.examples_root, self.examples = examples, None
        self.max_upload, self.max_side = int(max_upload_mb * 2**20), max_side
        self.model_lock = threading.Lock()  # one model call at a time
        self.tabs_lock = threading.Lock()  # the tabs, their seq numbers and answers, image ids
        self.examples_lock = threading.Lock()  # the examples are written once
        self.tabs: OrderedDict[str, Tab] = OrderedDict()  # least recently used first
        self.next_image_id = 0

    # -- examples ------------------------------------------------------------------------------

    def example_list(self) -> list[dict]:
        with self.examples_lock:
            if self.examples is None:  # first use: about a second
                self.examples = synthetic.write_examples(self.examples_root, seed=0,
                                                         per_kind=EXAMPLES_PER_KIND)
        return self.examples

    def example_path(self, file: str) -> Path:
        if file not in {e["file"] for e in self.example_list()}:
            raise RequestError(f"no example named {file!r}", HTTPStatus.NOT_FOUND)
        return self.examples_root / file

    # -- a tab's image -------------------------------------------------------------------------

    def decode(self, body: bytes, name: str) -> np.ndarray:
        """An uploaded file -> (H, W, 3) uint8 as predict.py reads it, after the size checks."""
        try:
            with Image.open(io.BytesIO(body)) as img:  # reads the header only
                w, h = img.size
        except Exception as e:  # PIL raises many kinds for a file that is not an image
            raise RequestError(f"{name}: not an image this app can read ({type(e).__name__})"
                               ) from None
        if max(w, h) > self.max_side:
            raise RequestError(f"{name}: {w}x{h} pixels; the limit is {self.max_side} a side")
        try:
            return readers.load_image(io.BytesIO(body))  # EXIF orientation applied, as predict.py
        except readers.DataError as e:
            reason = str(e).rsplit(": cannot read image ", 1)[-1]
            raise RequestError(f"{name}: cannot read image {reason}") from None

    def set_image(self, session: str, image: np.ndarray, name: str) -> dict:
        """Encode the image for the tab (its features, once) and make it the tab's image."""
        with self.model_lock:
            t0 = time.perf_counter()
            predictor = Predictor(self.model)
            predictor.set_image(image)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            set_image_ms = 1000 * (time.perf_counter() - t0)
        with self.tabs_lock:
            self.next_image_id += 1
            image_id = self.next_image_id
            self.tabs[session] = Tab(image_id, name, image, predictor)
            self.tabs.move_to_end(session)
            while len(self.tabs) > MAX_TABS:
                self.tabs.popitem(last=False)
        h, w = image.shape[:2]
        return {"image": image_id, "name": name, "width": w, "height": h,
                "set_image_ms": round(set_image_ms, 1)}

    def tab(self, session: str, image_id: Optional[int] = None) -> Tab:
        with self.tabs_lock:
            tab = self.tabs.get(session)
            if tab is not None:
                self.tabs.move_to_end(session)
        if tab is None:
            raise RequestError("this tab has no image (or it was dropped to make room for "
                               "other tabs): pick an image", HTTPStatus.CONFLICT)
        if image_id is not None and tab.image_id != image_id:
            raise RequestError("this tab's image has changed since: prompt it again",
                               HTTPStatus.CONFLICT)
        return tab

    # -- a prompt ------------------------------------------------------------------------------

    def prompt(self, request: dict) -> dict:
        """Checks every field, then runs the prompt unless a newer one of the tab overtook it."""
        seq = request.get("seq")
        if not (isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq < 2**53):
            raise RequestError(f"seq must be a whole number 0 or more, got {seq!r}")
        image_id = request.get("image")
        if not (isinstance(image_id, int) and not isinstance(image_id, bool)):
            raise RequestError(f"image must be the id /api/image answered, got {image_id!r}")
        session = session_id(request.get("session"))
        tab = self.tab(session, image_id)
        box = request.get("box")
        if box is not None:
            box = np.asarray(numbers(box, "box", 4))
        points, labels = request.get("points", []), request.get("labels", [])
        if not isinstance(points, list) or len(points) > MAX_POINTS:
            raise RequestError(f"points must be a list of at most {MAX_POINTS} [x, y] pairs")
        points = np.asarray([numbers(p, f"point {i}", 2) for i, p in enumerate(points)],
                            dtype=np.float64).reshape(-1, 2)
        if (not isinstance(labels, list) or len(labels) != len(points)
                or any(type(label) is not int or label not in (0, 1) for label in labels)):
            raise RequestError(f"labels must be one 1 (positive) or 0 (negative) per point, got "
                               f"{json.dumps(labels)[:80]}")
        h, w = tab.image.shape[:2]
        try:
            box, notice = check_prompt(box, points, h, w)  # a box partly outside: clipped
        except PromptError as e:
            raise RequestError(str(e)) from None

        with self.tabs_lock:
            tab.latest_seq = max(tab.latest_seq, seq)
        with self.model_lock:
            # a newer prompt of this tab is waiting (its answer is the one shown), or a new image
            if seq < tab.latest_seq or self.tabs.get(session) is not tab:
                return {"seq": seq, "superseded": True}
            t0 = time.perf_counter()
            try:
                maps = tab.predictor.predict(points if len(points) else None,
                                             np.asarray(labels, np.int64) if len(points) else None,
                                             box)
            except NonFiniteOutput as e:
                raise RequestError(f"{tab.name}: {e}", HTTPStatus.INTERNAL_SERVER_ERROR) from None
            prompt_ms = 1000 * (time.perf_counter() - t0)
        t0 = time.perf_counter()
        outputs = output_images(tab.image, maps)  # the cutout's colours estimated (foreground.py)
        cutout_ms = 1000 * (time.perf_counter() - t0)
        with self.tabs_lock:
            if seq > tab.answer_seq:
                tab.answer_seq, tab.outputs = seq, outputs
        sam = maps["sam"].astype(np.uint8) * 255
        return {"seq": seq, "prompt_ms": round(prompt_ms, 1), "cutout_ms": round(cutout_ms, 1),
                "sam": data_url(sam), "mask": data_url(outputs["mask"]),
                "alpha": data_url(outputs["alpha"]), "cutout": data_url(outputs["cutout"]),
                **({"notice": notice} if notice else {})}

    def every_object(self, request: dict) -> dict:
        """Every object of the tab's image: SAM's automatic masks (the thresholds recorded with its
        checkpoint, else Meta's), each refined by SAMA from its box; kept for /api/object."""
        image_id = request.get("image")
        if not (isinstance(image_id, int) and not isinstance(image_id, bool)):
            raise RequestError(f"image must be the id /api/image answered, got {image_id!r}")
        tab = self.tab(session_id(request.get("session")), image_id)
        try:
            settings = settings_for(self.model.sam)
        except SettingsError as e:
            raise RequestError(str(e), HTTPStatus.INTERNAL_SERVER_ERROR) from None
        with self.model_lock:
            t0 = time.perf_counter()
            try:
                found = find_objects(tab.predictor, settings)
                maps = refine(tab.predictor, [f.box for f in found])
            except NonFiniteOutput as e:
                raise RequestError(f"{tab.name}: {e}", HTTPStatus.INTERNAL_SERVER_ERROR) from None
            everything_ms = 1000 * (time.perf_counter() - t0)
        outputs = [output_images(tab.image, m) for m in maps]
        with self.tabs_lock:
            tab.objects = outputs
        return {"image": image_id, "everything_ms": round(everything_ms, 1),
                "settings": {"points_per_side": settings.points_per_side,
                             "pred_iou_thresh": settings.pred_iou_thresh,
                             "stability_score_thresh": settings.stability_score_thresh,
                             "box_nms_thresh": settings.box_nms_thresh},
                "objects": [{"box": box_text(f.box), "predicted_iou": f.predicted_iou,
                             "stability_score": f.stability, "mask": data_url(o["mask"])}
                            for f, o in zip(found, outputs)]}

    def object_png(self, session: str, image_id: int, index: int, name: str) -> tuple[bytes, str]:
        """Object `index`'s PNG of the tab's latest every-object answer, and its file name."""
        if name not in OUTPUTS:
            raise RequestError(f"name must be one of {', '.join(OUTPUTS)}, got {name!r}")
        tab = self.tab(session, image_id)
        with self.tabs_lock:
            objects = tab.objects
        if index >= len(objects):
            raise RequestError(f"no object {index}: the image has {len(objects)} (ask for every "
                               f"object first)", HTTPStatus.NOT_FOUND)
        return png_bytes(objects[index][name]), f"{Path(tab.name).stem}_{index}_{name}.png"

    def download(self, session: str, seq: int, name: str) -> tuple[bytes, str]:
        """predict.py's PNG of the tab's latest answer, and its file name."""
        if name not in OUTPUTS:
            raise RequestError(f"name must be one of {', '.join(OUTPUTS)}, got {name!r}")
        tab = self.tab(session)
        with self.tabs_lock:
            answer_seq, outputs = tab.answer_seq, tab.outputs
        if answer_seq != seq:
            raise RequestError("that answer was replaced by a newer one", HTTPStatus.CONFLICT)
        return png_bytes(outputs[name]), f"{Path(tab.name).stem}_{name}.png"


def session_id(value) -> str:
    if not isinstance(value, str) or not SESSION_ID.fullmatch(value):
        raise RequestError("session must be 8-64 letters, digits or dashes")
    return value


def numbers(value, what: str, n: int) -> list[float]:
    """n JSON numbers (NaN and inf are checked by check_prompt, with the coordinates; an integer
    beyond a float's range is infinite)."""
    if (not isinstance(value, list) or len(value) != n
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)):
        raise RequestError(f"{what} must be {n} numbers, got {json.dumps(value)[:80]}")
    floats = []
    for v in value:
        try:
            floats.append(float(v))
        except OverflowError:  # an integer beyond a float's range
            floats.append(math.inf if v > 0 else -math.inf)
    return floats


def data_url(array: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(array)).decode("ascii")


# ----------------------------------------------------------------------------------------------
# HTTP
# ----------------------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    """Routes a request to the App; answers JSON, PNG or the page."""

    protocol_version = "HTTP/1.1"
    timeout = READ_TIMEOUT  # socketserver sets it on the connection: reads wait no longer
    server: Server

    def do_GET(self) -> None:
        self.answer(self.route_get)

    do_HEAD = do_GET  # the same headers, no body (send)

    def do_POST(self) -> None:
        self.answer(self.route_post)

    def send_error(self, code: int, message: Optional[str] = None, explain=None) -> None:
        """http.server's own refusals (a method without a do_ method, a malformed request line,
        headers too long) as the page's JSON, not its HTML page."""
        headers = {}
        if code == HTTPStatus.NOT_IMPLEMENTED:  # http.server's answer to an unknown method
            code, message = HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} is not answered here"
            headers["Allow"] = "GET, HEAD, POST"
        self.close_connection = True
        content_type, body, _ = json_body({"error": message or HTTPStatus(code).phrase})
        self.send(HTTPStatus(code), content_type, body, headers)

    def route_get(self, path: str, query: dict) -> tuple:
        app = self.server.app
        if path == "/":
            return "text/html; charset=utf-8", PAGE.read_bytes(), None
        if path == "/api/examples":
            return json_body(app.example_list())
        if path == "/api/image":
            tab = app.tab(session_id(query.get("session")), whole(query, "image"))
            return "image/png", png_bytes(tab.image), None
        if path == "/api/download":
            body, filename = app.download(session_id(query.get("session")), whole(query, "seq"),
                                          query.get("name"))
            return "image/png", body, filename
        if path == "/api/object":
            body, filename = app.object_png(session_id(query.get("session")),
                                            whole(query, "image"), whole(query, "index"),
                                            query.get("name"))
            return "image/png", body, filename
        raise RequestError(f"no page {path}", HTTPStatus.NOT_FOUND)

    def route_post(self, path: str, query: dict) -> tuple:
        app = self.server.app
        if path == "/api/image":
            session = session_id(query.get("session"))
            if "example" in query:
                file = query["example"]
                self.read_body(0)
                return json_body(app.set_image(session, readers.load_image(app.example_path(file)),
                                               file))
            # the file's name, for messages and downloads: ASCII, no quotes (a header carries it)
            name = re.sub(r"[^\w. -]", "_", Path(query.get("name") or "").name, flags=re.ASCII)
            name = name[-100:] or "upload"
            body = self.read_body(app.max_upload, "upload")
            if not body:
                raise RequestError(f"{name}: an empty upload")
            return json_body(app.set_image(session, app.decode(body, name), name))
        if path == "/api/prompt":
            try:
                request = json.loads(self.read_body(MAX_PROMPT_BYTES, "prompt"))
            except ValueError as e:  # not UTF-8, not JSON, an integer of over 4300 digits
                raise RequestError(f"the prompt is not JSON ({str(e)[:100]})") from None
            if not isinstance(request, dict):
                raise RequestError("the prompt must be a JSON object")
            return json_body(app.prompt(request))
        if path == "/api/everything":
            try:
                request = json.loads(self.read_body(MAX_PROMPT_BYTES, "request"))
            except ValueError as e:
                raise RequestError(f"the request is not JSON ({str(e)[:100]})") from None
            if not isinstance(request, dict):
                raise RequestError("the request must be a JSON object")
            return json_body(app.every_object(request))
        raise RequestError(f"no page {path}", HTTPStatus.NOT_FOUND)

    def read_body(self, limit: int, what: str = "body") -> bytes:
        """The request's body, `what` it is named in messages; at most `limit` bytes."""
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise RequestError("the request needs a Content-Length", HTTPStatus.LENGTH_REQUIRED)
        if int(length) > limit:
            self.close_connection = True  # the body is not read
            if limit == 0:
                raise RequestError("this request takes no body")
            raise RequestError(f"the {what} is {size_text(int(length))}; the limit is "
                               f"{size_text(limit)}", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        body = bytearray()
        try:
            while len(body) < int(length):  # as it arrives, to say how much did
                chunk = self.rfile.read1(int(length) - len(body))
                if not chunk:
                    break
                body += chunk
        except (TimeoutError, ConnectionError):
            pass
        if len(body) < int(length):  # the client stalled (READ_TIMEOUT) or went away
            raise RequestError(f"the {what} stopped arriving after {len(body)} of {length} "
                               f"bytes", HTTPStatus.REQUEST_TIMEOUT)
        return bytes(body)

    def answer(self, route) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        filename = None
        try:
            host = self.headers.get("Host", "")
            own = {f"{HOST}:{self.server.server_port}", f"localhost:{self.server.server_port}"}
            if host not in own:
                # a page elsewhere reaching this one through a name of its own (DNS rebinding)
                raise RequestError(f"Host {host!r} refused: open http://{HOST}:"
                                   f"{self.server.server_port}/", HTTPStatus.FORBIDDEN)
            origin = self.headers.get("Origin")  # a browser names the page that sends a request
            if origin is not None and origin not in {f"http://{h}" for h in own}:
                raise RequestError(f"Origin {origin[:100]!r} refused: only this page's own "
                                   f"requests are answered", HTTPStatus.FORBIDDEN)
            content_type, body, filename = route(url.path, query)
            status = HTTPStatus.OK
        except RequestError as e:
            status, (content_type, body, _) = e.status, json_body({"error": str(e)})
            self.close_connection = True  # its body may be left unread
        except Exception as e:  # a bug: its traceback on the console, one line on the page
            traceback.print_exc()
            status = HTTPStatus.INTERNAL_SERVER_ERROR
            content_type, body, _ = json_body(
                {"error": f"internal error ({type(e).__name__}); the console has the details"})
            self.close_connection = True
        headers = {"Content-Disposition": f'attachment; filename="{filename}"'} if filename else {}
        self.send(status, content_type, body, headers)

    def send(self, status: HTTPStatus, content_type: str, body: bytes,
             headers: Optional[dict] = None) -> None:
        """The answer; to HEAD, its headers only."""
        self.send_response(status)
        for name, value in {"Content-Type": content_type, "Content-Length": str(len(body)),
                            "Cache-Control": "no-store", **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format, *args) -> None:  # quiet: errors go to the page
        pass


def json_body(value) -> tuple[str, bytes, None]:
    return "application/json", json.dumps(value).encode(), None


def size_text(n: int) -> str:
    """A size in bytes, short: 9000 -> '8.79 kB', 32 MB -> '32 MB'."""
    return f"{n / 2**20:.3g} MB" if n >= 2**20 else f"{n / 2**10:.3g} kB"


def whole(query: dict, key: str) -> int:
    value = query.get(key, "")
    if not value.isdigit():
        raise RequestError(f"{key} must be a whole number, got {value!r}")
    return int(value)


class Server(ThreadingHTTPServer):
    daemon_threads = True  # a request left open does not hold the process at exit

    def __init__(self, app: App, port: int) -> None:
        super().__init__((HOST, port), Handler)
        self.app = app

    def handle_error(self, request, client_address) -> None:
        """A client gone mid-request (BrokenPipeError, ConnectionResetError): nobody to tell, no
        traceback; anything else: socketserver's traceback on the console."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=str(STANDIN_SAMA),
                   help="SAMA checkpoint (default: the shipped stand-in)")
    p.add_argument("--sam-checkpoint",
                   help="SAM checkpoint (default: the shipped stand-in SAM with the default "
                        "--checkpoint, else the file recorded in the SAMA checkpoint)")
    p.add_argument("--port", type=int, default=8000, help="0: a free port")
    p.add_argument("--examples", type=Path, default=Path("runs/app/examples"),
                   help="where the benchmark's test images are written on first use")
    args = p.parse_args(argv)
    return run_main(lambda: serve(args), {CheckpointError: 2})


def serve(args) -> int:
    """The page on HOST:--port until ctrl-C, which stops the server (exit status 0)."""
    if not 0 <= args.port <= 65535:
        raise OptionError(f"--port {args.port}: not a port number (0-65535)")
    sam_checkpoint = args.sam_checkpoint
    if sam_checkpoint is None and Path(args.checkpoint).resolve() == STANDIN_SAMA:
        sam_checkpoint = STANDIN_SAM  # wherever the app is started from
    app = App(args.checkpoint, sam_checkpoint, args.examples)
    try:
        server = Server(app, args.port)
    except OSError as e:
        raise OptionError(f"--port {args.port}: cannot listen on {HOST} ({e.strerror or e})"
                          ) from None
    print(f"serving SAMA ({args.checkpoint}) on http://{HOST}:{server.server_port}/ "
          f"(Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
