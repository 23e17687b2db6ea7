"""Tests for app.py's server, in-process: an upload, a box, points, downloads equal to predict.py's
PNGs, tabs kept apart, a prompt overtaken while it waited dropped, and bad requests answered with
one line of JSON (never a traceback). The page itself: tests/test_app_browser.py."""

import base64
import http.client
import io
import json
import socket
import struct
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import sama_maps
from PIL import Image

import predict
import readers
from deploy import app
from sama import SamaPredictor

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
CKPT = ["--checkpoint", str(WEIGHTS / "sama_standin.pt"),
        "--sam-checkpoint", str(WEIGHTS / "sam_standin.pth")]
MAX_SIDE = 320  # the tests' limits: an 8 kB upload, 320 px a side
MAX_UPLOAD_MB = 8 / 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    state = app.App(WEIGHTS / "sama_standin.pt", WEIGHTS / "sam_standin.pth",
                    tmp_path_factory.mktemp("app") / "examples", MAX_UPLOAD_MB, MAX_SIDE)
    httpd = app.Server(state, 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def request(server, method: str, path: str, body=None, host=None, json_body=None, origin=None):
    """-> (status, headers, body bytes); json_body is sent as JSON, body as it is."""
    if json_body is not None:
        body = json.dumps(json_body).encode()
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=60)
    headers = {"Host": host or f"127.0.0.1:{server.server_port}"}
    if origin is not None:
        headers["Origin"] = origin
    if method == "POST":
        headers["Content-Length"] = str(len(body or b""))
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    answer = response.status, dict(response.getheaders()), response.read()
    connection.close()
    return answer


def ok(answer) -> dict:
    status, _, body = answer
    assert status == 200, body
    return json.loads(body)


def refused(answer, status: int, words: str) -> None:
    """A refusal: the status, and one line of JSON holding `words`."""
    code, headers, body = answer
    assert code == status, body
    assert headers["Content-Type"] == "application/json"
    message = json.loads(body)["error"]
    assert words in message, message
    assert "\n" not in message and "Traceback" not in message


def png(url_or_bytes) -> np.ndarray:
    if isinstance(url_or_bytes, str):
        url_or_bytes = base64.b64decode(url_or_bytes.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(url_or_bytes)))


def jpeg_with_exif_rotation(h=48, w=80) -> bytes:
    """A small JPEG stored landscape, displayed portrait (EXIF orientation 6)."""
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    pixels[10:30, 20:60] = (230, 60, 30)
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", exif=exif, quality=95)
    return buffer.getvalue()


def upload(server, session: str, body: bytes, name="photo.jpg") -> dict:
    return ok(request(server, "POST", f"/api/image?session={session}&name={name}", body))


def prompt(server, session, image, seq, box=None, points=(), labels=()):
    return request(server, "POST", "/api/prompt",
                   json_body={"session": session, "image": image, "seq": seq, "box": box,
                              "points": [list(p) for p in points], "labels": list(labels)})


def predict_py(image: Path, out: Path, box=None, points=(), labels=()) -> dict[str, bytes]:
    """predict.py's three PNGs for the same image and prompt."""
    argv = [str(image), *CKPT, "--out", str(out)]
    if box is not None:
        argv += ["--box", *map(str, box)]
    for (x, y), label in zip(points, labels):
        argv += ["--point" if label else "--neg-point", str(x), str(y)]
    assert predict.main(argv) == 0
    return {name: Path(f"{out}_{name}.png").read_bytes() for name in app.OUTPUTS}


def test_upload_box_points_and_downloads_equal_predict_py(server, tmp_path):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg_with_exif_rotation())
    image = upload(server, "tab-one-1", photo.read_bytes())
    assert (image["width"], image["height"], image["name"]) == (48, 80, "photo.jpg")  # EXIF applied
    assert image["set_image_ms"] > 0
    status, headers, shown = request(server, "GET",
                                     f"/api/image?session=tab-one-1&image={image['image']}")
    assert status == 200 and headers["Content-Type"] == "image/png"
    np.testing.assert_array_equal(png(shown), readers.load_image(photo))

    prompts = [  # a box; points only; a box with a positive and a negative point
        {"box": [5, 10, 40, 70]},
        {"points": [(20, 40), (2, 3)], "labels": [1, 0]},
        {"box": [5.5, 10, 40, 70.25], "points": [(24, 44), (6, 12)], "labels": [1, 0]},
    ]
    for seq, p in enumerate(prompts, start=1):
        answer = ok(prompt(server, "tab-one-1", image["image"], seq, **p))
        assert answer["seq"] == seq and answer["prompt_ms"] > 0
        expected = predict_py(photo, tmp_path / f"p{seq}", **p)
        for name in app.OUTPUTS:
            status, headers, body = request(
                server, "GET", f"/api/download?session=tab-one-1&seq={seq}&name={name}")
            assert status == 200 and body == expected[name], name  # byte for byte
            assert headers["Content-Disposition"] == f'attachment; filename="photo_{name}.png"'
        assert answer["cutout_ms"] > 0
        for name in ("mask", "alpha", "cutout"):  # what the page shows is what it downloads
            np.testing.assert_array_equal(png(answer[name]), png(expected[name]))
        assert set(np.unique(png(answer["sam"])).tolist()) <= {0, 255}
    # only the latest answer is kept for download
    refused(request(server, "GET", "/api/download?session=tab-one-1&seq=1&name=mask"), 409,
            "replaced by a newer one")


def test_sams_mask_is_the_one_samas_predictor_gives(server):
    """The page's SAM panel: SAM's own mask from the same features, as SamaPredictor returns it."""
    image = ok(request(server, "POST", "/api/image?session=tab-sam-1&example=DIS-TE1_0002.jpg",
                       b""))
    box = [20, 20, image["width"] - 20, image["height"] - 20]
    answer = ok(prompt(server, "tab-sam-1", image["image"], 1, box=box))
    reference = SamaPredictor(server.app.model)
    reference.set_image(readers.load_image(server.app.examples_root / "DIS-TE1_0002.jpg"))
    sam_mask = sama_maps(reference, box=np.array(box, float))["sam_logits"] > 0
    np.testing.assert_array_equal(png(answer["sam"]), sam_mask.astype(np.uint8) * 255)
    assert not np.array_equal(png(answer["sam"]), png(answer["mask"]))


def test_examples_are_listed_and_picked(server):
    examples = ok(request(server, "GET", "/api/examples"))
    kinds = [e["kind"] for e in examples]
    per_kind = app.EXAMPLES_PER_KIND
    assert sorted(set(kinds)) == sorted(["lines", "mesh", "rings", "branch", "creature", "frame",
                                         "plant", "holes", "text", "fence", "person", "fur",
                                         "glass", "plush", "object", "veil", "foliage", "lace"])
    assert all(kinds.count(k) == per_kind for k in set(kinds))
    image = ok(request(server, "POST", "/api/image?session=tab-ex-12&example=test_0002_0.png", b""))
    assert image["name"] == "test_0002_0.png"
    _, _, shown = request(server, "GET", f"/api/image?session=tab-ex-12&image={image['image']}")
    expected = readers.load_image(server.app.examples_root / "test_0002_0.png")
    np.testing.assert_array_equal(png(shown), expected)
    for name in ("../app.py", "DIS-TE1_0099.jpg", "examples.json"):
        refused(request(server, "POST", f"/api/image?session=tab-ex-12&example={name}", b""), 404,
                "no example named")


def test_two_tabs_do_not_see_each_others_images(server):
    small = jpeg_with_exif_rotation()  # displayed 48 x 80
    a = upload(server, "tab-aaaa", small, "small.jpg")
    b = ok(request(server, "POST", "/api/image?session=tab-bbbb&example=DIS-TE1_0000.jpg", b""))
    _, _, shown_a = request(server, "GET", f"/api/image?session=tab-aaaa&image={a['image']}")
    assert png(shown_a).shape == (80, 48, 3)
    refused(request(server, "GET", f"/api/image?session=tab-aaaa&image={b['image']}"), 409,
            "image has changed")  # tab A cannot read tab B's image by its id
    big_box = [10, 10, b["width"] - 10, b["height"] - 10]
    assert png(ok(prompt(server, "tab-bbbb", b["image"], 1, box=big_box))["mask"]).shape == (
        b["height"], b["width"])
    corner = [b["width"] - 20, b["height"] - 20, b["width"] - 10, b["height"] - 10]
    refused(prompt(server, "tab-aaaa", a["image"], 1, box=corner), 400, "outside the 48x80 image")
    refused(prompt(server, "tab-cccc", a["image"], 1, box=[1, 1, 9, 9]), 409, "has no image")


def test_a_prompt_overtaken_while_waiting_is_dropped(server, monkeypatch):
    image = upload(server, "tab-race-1", jpeg_with_exif_rotation())
    tab = server.app.tabs["tab-race-1"]
    calls = []
    real = SamaPredictor.predict_torch
    monkeypatch.setattr(SamaPredictor, "predict_torch",
                        lambda self, *a, **k: calls.append(k or a) or real(self, *a, **k))
    answers = {}

    def send(seq):
        answers[seq] = ok(prompt(server, "tab-race-1", image["image"], seq, box=[5, 10, 30 + seq,
                                                                                   70]))

    with server.app.model_lock:  # the model is busy: both prompts wait
        threads = []
        for seq in (7, 8):
            threads.append(threading.Thread(target=send, args=(seq,)))
            threads[-1].start()
            deadline = time.time() + 30
            while tab.latest_seq != seq and time.time() < deadline:
                time.sleep(0.01)
    for thread in threads:
        thread.join(60)
    assert answers[7] == {"seq": 7, "superseded": True}
    assert answers[8]["seq"] == 8 and "mask" in answers[8]
    assert len(calls) == 1  # the model ran for the latest prompt only


@pytest.mark.parametrize("body, words", [
    ({"box": [float("nan"), 10, 40, 70]}, "box nan 10 40 70: coordinates must be finite"),
    ({"box": [5, 10, float("inf"), 70]}, "coordinates must be finite numbers"),
    ({"points": [[float("nan"), 3]], "labels": [1]}, "point (nan, 3): coordinates must be finite"),
    ({"box": [50, 10, 60, 70]}, "box 50 10 60 70: outside the 48x80 image"),
    ({"box": [-9, 10, -1, 70]}, "outside the 48x80 image"),
    ({"box": [40, 10, 5, 70]}, "needs x1 > x0 and y1 > y0"),
    ({"points": [[10, 81]], "labels": [1]}, "point (10, 81) outside the 48x80 image"),
    ({"box": [5, 10, 40]}, "box must be 4 numbers, got [5, 10, 40]"),
    ({"box": [5, "10", 40, 70]}, "box must be 4 numbers"),
    ({"box": [5, True, 40, 70]}, "box must be 4 numbers"),
    ({"box": None}, "give a box and / or at least one point"),
    ({"points": [[10, 20]], "labels": [2]}, "labels must be one 1 (positive) or 0 (negative)"),
    ({"points": [[10, 20]], "labels": [True]}, "labels must be one 1"),
    ({"points": [[10, 20]], "labels": []}, "labels must be one 1"),
    ({"points": [[10, 20, 30]], "labels": [1]}, "point 0 must be 2 numbers"),
    ({"points": "10 20", "labels": [1]}, "points must be a list"),
    ({"seq": -1}, "seq must be a whole number"),
    ({"seq": 1.5}, "seq must be a whole number"),
    ({"image": "1"}, "image must be the id"),
    ({"session": "a/b"}, "session must be 8-64 letters"),
])
def test_bad_prompts_are_one_line(server, body, words):
    image = upload(server, "tab-bad-1", jpeg_with_exif_rotation())
    request_body = {"session": "tab-bad-1", "image": image["image"], "seq": 1, "box": None,
                    "points": [], "labels": [], **body}
    # json.dumps writes NaN and Infinity as JavaScript does not: the server reads them anyway
    refused(request(server, "POST", "/api/prompt", json.dumps(request_body).encode()), 400, words)


def test_bad_requests_are_one_line(server):
    port = server.server_port
    post = lambda path, body: request(server, "POST", path, body)  # noqa: E731
    refused(post("/api/image?session=tab-up-1&name=notes.txt", b"not an image"), 400,
            "notes.txt: not an image this app can read (UnidentifiedImageError)")
    refused(post("/api/image?session=tab-up-1&name=x.png", b""), 400, "x.png: an empty upload")
    refused(post("/api/image?session=tab-up-1&name=x.png", b"\0" * 9000), 413,
            "the upload is 8.79 kB; the limit is 8 kB")
    wide = io.BytesIO()
    Image.new("RGB", (MAX_SIDE + 1, 4)).save(wide, format="PNG")
    refused(post("/api/image?session=tab-up-1&name=wide.png", wide.getvalue()), 400,
            f"wide.png: {MAX_SIDE + 1}x4 pixels; the limit is {MAX_SIDE} a side")
    truncated = jpeg_with_exif_rotation()[:1500]
    refused(post("/api/image?session=tab-up-1&name=cut.jpg", truncated), 400,
            "cut.jpg: cannot read image")
    refused(post("/api/image?session=short&name=x.png", b"x"), 400, "session must be 8-64")
    refused(post('/api/image?session=tab-up-1&name=a%22b%0A%C3%A9.png', b"x"), 400,
            "a_b__.png: not an image")  # a name fit for a header
    refused(post("/api/prompt", b"{not json"), 400, "the prompt is not JSON")
    refused(post("/api/prompt", b"[1, 2]"), 400, "the prompt must be a JSON object")
    refused(post("/api/prompt", b"x" * (app.MAX_PROMPT_BYTES + 1)), 413,
            "the prompt is 64 kB; the limit is 64 kB")
    refused(post("/api/prompt", b'{"seq": 1' + b"0" * 5000 + b"}"), 400, "the prompt is not JSON")
    refused(request(server, "GET", "/api/download?session=tab-up-1&seq=1&name=secret"), 400,
            "name must be one of mask, alpha, cutout")
    refused(request(server, "GET", "/api/download?session=tab-up-1&seq=x&name=mask"), 400,
            "seq must be a whole number")
    refused(request(server, "GET", "/nothing/here"), 404, "no page /nothing/here")
    refused(request(server, "GET", "/", host=f"attacker.example:{port}"), 403,
            "Host 'attacker.example")
    status, headers, page = request(server, "GET", "/", host=f"localhost:{port}")
    assert status == 200 and b"<canvas" in page


def test_a_broken_model_output_and_a_bug_are_one_line(server, monkeypatch, capsys):
    image = upload(server, "tab-nan-1", jpeg_with_exif_rotation())
    real = SamaPredictor.predict_torch

    def overflowing(self, *args, **kwargs):
        maps = real(self, *args, **kwargs)
        return {**maps, "alpha": maps["alpha"] * float("nan")}

    monkeypatch.setattr(SamaPredictor, "predict_torch", overflowing)
    refused(prompt(server, "tab-nan-1", image["image"], 1, box=[5, 10, 40, 70]), 500,
            "photo.jpg: NaN or inf in the model's alpha")
    monkeypatch.undo()
    monkeypatch.setattr(app, "output_images", lambda *a: 1 / 0)
    refused(prompt(server, "tab-nan-1", image["image"], 2, box=[5, 10, 40, 70]), 500,
            "internal error (ZeroDivisionError); the console has the details")
    assert "ZeroDivisionError" in capsys.readouterr().err  # the traceback: on the console only


def test_the_command_line_refuses_a_bad_checkpoint_and_a_busy_port(server, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"nope")
    assert app.main(["--checkpoint", str(bad), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}") and err.count("\n") == 1
    assert app.main([*CKPT, "--port", str(server.server_port)]) == 2
    assert capsys.readouterr().err == (f"error: --port {server.server_port}: cannot listen on "
                                       "127.0.0.1 (Address already in use)\n")
    assert app.main(["--port", "70000"]) == 2
    assert "not a port number" in capsys.readouterr().err


def test_a_box_of_huge_numbers_is_named_in_short(server):
    image = upload(server, "tab-huge-1", jpeg_with_exif_rotation())
    code, _, body = prompt(server, "tab-huge-1", image["image"], 1, box=[1e300, 0, 1e308, 10])
    message = json.loads(body)["error"]
    assert code == 400 and message == "box 1e+300 0 1e+308 10: outside the 48x80 image", message
    notice = ok(prompt(server, "tab-huge-1", image["image"], 2, box=[0, 0, 1e308, 1e308]))["notice"]
    assert notice == "box 0 0 1e+308 1e+308: partly outside the 48x80 image, clipped to 0 0 48 80"
    code, _, body = prompt(server, "tab-huge-1", image["image"], 3, box=[0, 0, 10**400, 5])
    assert (code, json.loads(body)["error"]) == (400, "box 0 0 inf 5: coordinates must be finite "
                                                      "numbers")


def test_a_request_from_another_origin_is_refused(server):
    port = server.server_port
    image = upload(server, "tab-origin-1", jpeg_with_exif_rotation())
    body = {"session": "tab-origin-1", "image": image["image"], "seq": 1, "box": [5, 10, 40, 70]}
    for origin in ("http://evil.example.com", f"http://127.0.0.1:{port + 1}", "null"):
        refused(request(server, "POST", "/api/prompt", json_body=body, origin=origin), 403,
                f"Origin {origin!r} refused")
        refused(request(server, "GET", "/api/examples", origin=origin), 403, "refused")
    for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
        ok(request(server, "POST", "/api/prompt", json_body={**body, "seq": 2}, origin=origin))


def test_other_methods_are_refused_in_json_and_head_is_answered(server):
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS", "BREW"):
        code, headers, body = request(server, method, "/api/prompt", body=b"")
        refused((code, headers, body), 405, f"{method} is not answered here")
        assert headers["Allow"] == "GET, HEAD, POST"
    _, got, page = request(server, "GET", "/")
    code, headers, body = request(server, "HEAD", "/")
    assert code == 200 and body == b"" and headers["Content-Length"] == str(len(page))
    assert headers["Content-Type"] == got["Content-Type"]


def test_a_stalled_body_times_out_and_a_client_gone_is_quiet(server, monkeypatch, capsys):
    monkeypatch.setattr(app.Handler, "timeout", 0.5)
    head = (f"POST /api/prompt HTTP/1.1\r\nHost: 127.0.0.1:{server.server_port}\r\n"
            f"Content-Length: 1000\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as stalled:
        stalled.sendall(head + b'{"seq"')
        answer = stalled.makefile("rb").read()  # the server answers, then closes
    status, _, body = answer.partition(b"\r\n")[0], None, answer.split(b"\r\n\r\n", 1)[1]
    assert b" 408 " in status, answer
    assert json.loads(body)["error"] == "the prompt stopped arriving after 6 of 1000 bytes"
    gone = socket.create_connection(("127.0.0.1", server.server_port), timeout=10)
    gone.sendall(head + b'{"seq"')
    gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # a reset
    gone.close()
    time.sleep(1)
    assert "Traceback" not in capsys.readouterr().err


def test_a_box_partly_outside_is_clipped_and_said(server):
    image = upload(server, "tab-clip-1", jpeg_with_exif_rotation())
    clipped = ok(prompt(server, "tab-clip-1", image["image"], 1, box=[-50, -50, 40, 70]))
    assert clipped["notice"] == ("box -50 -50 40 70: partly outside the 48x80 image, clipped to "
                                 "0 0 40 70")
    inside = ok(prompt(server, "tab-clip-1", image["image"], 2, box=[0, 0, 40, 70]))
    assert "notice" not in inside
    assert all(np.array_equal(png(clipped[k]), png(inside[k])) for k in ("sam", "mask", "alpha"))


# ----------------------------------------------------------------------------------------------
# Every object: the button's endpoint and the objects' downloads, as predict.py --everything
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def coarse_grid(monkeypatch):
    """The stand-in's recorded thresholds on an 8 x 8 grid of points (a quick test)."""
    import predictor

    recorded = predictor.settings_for

    def coarse(sam):
        return replace(recorded(sam), points_per_side=8)

    monkeypatch.setattr(app, "settings_for", coarse)  # as app.py imported it
    monkeypatch.setattr(predictor, "settings_for", coarse)  # predict.py imports it as it runs


def test_every_object_and_its_downloads_equal_predict_py(server, tmp_path, coarse_grid):
    from miniature.everything_study import TEST_SEEDS, scene

    path = tmp_path / "scene.png"
    Image.fromarray(scene(TEST_SEEDS[0])[0]).save(path)
    image = server.app.set_image("tab-every-1", readers.load_image(path), "scene.png")
    answer = ok(request(server, "POST", "/api/everything",
                        json_body={"session": "tab-every-1", "image": image["image"]}))
    assert answer["settings"]["points_per_side"] == 8 and answer["everything_ms"] > 0
    argv = [str(path), "--everything", *CKPT, "--out", str(tmp_path / "cli")]
    assert predict.main(argv) == 0
    listed = json.loads((tmp_path / "cli_objects.json").read_text())
    assert len(answer["objects"]) == len(listed) >= 1
    for k, (shown, entry) in enumerate(zip(answer["objects"], listed)):
        assert shown["box"] == entry["box"]
        assert shown["predicted_iou"] == entry["predicted_iou"]
        assert shown["stability_score"] == entry["stability_score"]
        for name in app.OUTPUTS:
            status, headers, body = request(
                server, "GET", f"/api/object?session=tab-every-1&image={image['image']}&index={k}"
                               f"&name={name}")
            assert status == 200 and headers["Content-Type"] == "image/png"
            assert f'filename="scene_{k}_{name}.png"' in headers["Content-Disposition"]
            assert body == (tmp_path / entry["files"][name]).read_bytes(), (k, name)
        np.testing.assert_array_equal(png(shown["mask"]),
                                      png((tmp_path / entry["files"]["mask"]).read_bytes()))
    n = len(listed)
    refused(request(server, "GET", f"/api/object?session=tab-every-1&image={image['image']}"
                                   f"&index={n}&name=mask"), 404, f"no object {n}")
    refused(request(server, "GET", f"/api/object?session=tab-every-1&image={image['image']}"
                                   f"&index=0&name=seg"), 400, "name must be one of")


def test_every_object_bad_requests_are_one_line(server):
    refused(request(server, "POST", "/api/everything", json_body={"session": "tab-none-99",
                                                                  "image": 1}),
            409, "this tab has no image")
    refused(request(server, "POST", "/api/everything", json_body={"session": "tab-none-99"}),
            400, "image must be the id")
    refused(request(server, "POST", "/api/everything", body=b"{"), 400, "not JSON")
    refused(request(server, "GET", "/api/object?session=tab-none-99&image=1&index=0&name=mask"),
            409, "this tab has no image")
