"""madf-serve: the HTTP API through an HTTP client (good requests, each bad request, concurrent clients getting the
bytes single calls get, queue overflow) and the painting page in a real headless browser (Debian's Chromium driven
by Selenium through the system chromedriver; skipped with one reason where no browser is installed)."""
import base64
import io
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from madf.inpaint.backend import BackendBase
from madf.inpaint.inpainter import Inpainter, TorchBackend
from madf.model.network import build_model

from conftest import TINY, random_pair

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from madf.serve.app import create_app  # noqa: E402


def png(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.fixture(scope="module")
def inpainter():
    return Inpainter(TorchBackend(build_model(TINY, seed=0)), batch_size=4)


@pytest.fixture(scope="module")
def client(inpainter):
    with TestClient(create_app(inpainter, max_upload_mb=1, max_megapixels=0.05)) as c:
        yield c


def _pair(seed=0, h=48, w=64):
    image, hole = random_pair(h, w, seed=seed)
    return image, hole, png(image), png((hole * 255).astype(np.uint8))


def test_multipart_and_json_give_the_inpainted_png(client, inpainter):
    image, hole, image_png, mask_png = _pair()
    expected = inpainter(image, hole)
    response = client.post("/inpaint", files={"image": ("photo.png", image_png), "mask": ("hole.png", mask_png)})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    out = decode(response.content)
    assert np.array_equal(out, expected) and np.array_equal(out[~hole], image[~hole])
    as_json = {"image": base64.b64encode(image_png).decode(),
               "mask": "data:image/png;base64," + base64.b64encode(mask_png).decode()}
    assert client.post("/inpaint", json=as_json).content == response.content
    # MIME base64 (line breaks every 76 characters, as email and base64(1) write it) under a differently cased
    # media type: the same answer (both were refused)
    import json
    mime = {"image": base64.encodebytes(image_png).decode().replace("\n", "\r\n"),
            "mask": base64.encodebytes(mask_png).decode()}
    assert "\n" in mime["image"]
    cased = client.post("/inpaint", content=json.dumps(mime),
                        headers={"content-type": "Application/JSON; charset=UTF-8"})
    assert cased.status_code == 200 and cased.content == response.content, cased.text
    broken = client.post("/inpaint", json={**as_json, "image": as_json["image"][:20] + "!" + as_json["image"][20:]})
    assert broken.status_code == 400 and "not valid base64" in broken.json()["detail"]


def test_health_info_page_and_openapi(client):
    import os
    import socket
    health = client.get("/health")
    me = f"{socket.gethostname()}:{os.getpid()}"   # one process: the replica is this host and process
    assert health.json() == {"status": "ok", "replica": me} and health.headers["X-Madf-Replica"] == me
    info = client.get("/info").json()
    assert info["replica"] == me
    assert info["model"]["levels"] == TINY.levels and info["precision"] == "fp32" and "PyTorch" in info["backend"]
    assert info["limits"]["max_upload_mb"] == 1 and info["strategy"]["name"] == "auto"
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    assert "http://" not in page.text and "https://" not in page.text   # nothing fetched from elsewhere
    assert "/inpaint" in client.get("/openapi.json").json()["paths"]


def test_bad_requests_get_one_line_reasons(client):
    image, hole, image_png, mask_png = _pair()
    small_mask = png(np.zeros((24, 32), np.uint8))
    cases = [
        ({"files": {"image": ("x.png", b"not an image"), "mask": ("m.png", mask_png)}}, 400,
         "image x.png: unreadable (not an image format Pillow reads)"),
        ({"files": {"image": ("photo.png", image_png), "mask": ("m.png", small_mask)}}, 400,
         "photo.png: image is 64x48 but its mask is 32x24 (WxH); send a mask of the image's size"),
        ({"files": {"image": ("photo.png", image_png)}}, 400, "send two files, 'image' and 'mask'"),
        ({"content": b"{nope", "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
        ({"json": {"image": "%%%", "mask": "x"}}, 400, "JSON field 'image' is not valid base64"),
        ({"json": [1, 2]}, 400, "send a JSON object"),
        ({"content": b"raw", "headers": {"content-type": "text/plain"}}, 415, "multipart/form-data"),
        ({"files": {"image": ("big.png", png(np.zeros((300, 300, 3), np.uint8))), "mask": ("m.png", mask_png)}},
         413, "more than 0.05 megapixels"),
        ({"content": b"x" * (2 * 2**20), "headers": {"content-type": "application/json"}}, 413,
         "upload larger than 1 MiB"),
    ]
    for kwargs, status, message in cases:
        response = client.post("/inpaint", **kwargs)
        assert response.status_code == status, (message, response.text)
        detail = response.json()["detail"]
        assert isinstance(detail, str) and "\n" not in detail and message in detail, detail


def test_streamed_upload_past_the_limit_is_413(client):
    def chunks():
        for _ in range(40):
            yield b"x" * 65536   # 2.5 MiB without a Content-Length
    response = client.post("/inpaint", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """uvicorn in a thread on a free localhost port (real sockets, real concurrency)."""

    def __init__(self, app):
        import uvicorn
        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started and time.time() < deadline:
            time.sleep(0.05)
        assert self.server.started, "uvicorn did not start"
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


def test_concurrent_clients_get_the_bytes_single_calls_get(inpainter):
    import httpx
    pairs = [_pair(seed=i) for i in range(8)]
    with Server(create_app(inpainter, wait_ms=50)) as url:
        def call(p):
            return httpx.post(f"{url}/inpaint", files={"image": ("p.png", p[2]), "mask": ("m.png", p[3])},
                              timeout=60).content
        single = [call(p) for p in pairs]
        with ThreadPoolExecutor(8) as pool:
            together = list(pool.map(call, pairs))
        info = httpx.get(f"{url}/info").json()
    assert together == single
    assert info["largest_batch"] > 1, info   # the concurrent requests shared forward passes


class Slow(BackendBase):
    """A backend that takes its time, to fill the queue."""
    multiple = 16

    def describe(self):
        return "slow"

    def __call__(self, image, mask):
        time.sleep(0.4)
        return image


def test_a_full_queue_answers_503_with_retry_after():
    import httpx
    image, hole, image_png, mask_png = _pair()
    with Server(create_app(Inpainter(Slow()), queue_size=1, max_batch=1, wait_ms=0)) as url:
        def call(_):
            return httpx.post(f"{url}/inpaint", files={"image": ("p.png", image_png), "mask": ("m.png", mask_png)},
                              timeout=60)
        with ThreadPoolExecutor(6) as pool:
            responses = list(pool.map(call, range(6)))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) >= 1 and codes.count(503) >= 1, codes
    busy = next(r for r in responses if r.status_code == 503)
    assert busy.headers["retry-after"] == "1" and "retry shortly" in busy.json()["detail"]


# ---- the page in a real browser ------------------------------------------------------------------------------------

def _browser(width=1200, height=900):
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("no browser: install Debian's chromium and chromium-driver (the CI does)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", f"--window-size={width},{height}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


FETCH_AS_BASE64 = """
const done = arguments[arguments.length - 1];
const toB64 = (blob) => new Promise((ok) => { const r = new FileReader(); r.onload = () => ok(r.result.split(',')[1]);
                                               r.readAsDataURL(blob); });
(async () => {
  const result = await (await fetch(document.getElementById('result').src)).blob();
  done([await toB64(result), await toB64(await maskBlob())]);
})();
"""


def test_the_page_paints_a_stroke_and_inpaints_it(inpainter, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    image = random_pair(96, 128, seed=11)[0]
    photo = tmp_path / "photo.png"
    Image.fromarray(image).save(photo)
    with Server(create_app(inpainter)) as url:
        browser = _browser()
        try:
            browser.get(url + "/")
            browser.find_element(By.ID, "file").send_keys(str(photo))
            WebDriverWait(browser, 20).until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-loaded"))
            canvas = browser.find_element(By.ID, "mask")
            (ActionChains(browser).move_to_element_with_offset(canvas, -100, -20).click_and_hold()
             .move_by_offset(80, 10).move_by_offset(80, 20).release().perform())
            browser.find_element(By.ID, "go").click()
            WebDriverWait(browser, 60).until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-done"))
            assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-done") == "1", \
                browser.find_element(By.ID, "status").text
            result_b64, mask_b64 = browser.execute_async_script(FETCH_AS_BASE64)
            if Path.cwd().joinpath("docs").is_dir() and __import__("os").environ.get("MADF_SCREENSHOT"):
                browser.save_screenshot(str(Path("docs") / "madf-serve.png"))
        finally:
            browser.quit()
    result = decode(base64.b64decode(result_b64))[..., :3]
    hole = decode(base64.b64decode(mask_b64))[..., 0] >= 128
    print(f"page: stroke covers {hole.mean():.1%} of the photo; "
          f"{int((result != image).any(axis=2).sum())} pixels changed")
    assert result.shape == image.shape and 0.01 < hole.mean() < 0.5
    assert np.array_equal(result[~hole], image[~hole])          # nothing outside the stroke changed
    assert (result[hole] != image[hole]).any()                   # and the stroke was filled


def test_the_page_fits_a_phone_screen(inpainter, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    Image.fromarray(random_pair(600, 800, seed=12)[0]).save(tmp_path / "wide.png")
    with Server(create_app(inpainter)) as url:
        browser = _browser(390, 844)
        try:
            browser.get(url + "/")
            browser.find_element(By.ID, "file").send_keys(str(tmp_path / "wide.png"))
            WebDriverWait(browser, 20).until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-loaded"))
            widths = browser.execute_script(
                "return [document.documentElement.scrollWidth, window.innerWidth, "
                "document.getElementById('mask').getBoundingClientRect().width]")
        finally:
            browser.quit()
    scroll, inner, canvas = widths
    assert scroll <= inner and canvas <= inner, widths   # no sideways scrolling; the photo is scaled to fit


def test_the_api_page_renders_and_runs_a_request(inpainter, tmp_path):
    """/docs in a real browser, offline: Swagger UI reads the OpenAPI 3.1 description (Swagger UI 4 said "Unable to
    render this definition" while a text check of the page passed), and one request made there comes back 200."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    image, hole, image_png, mask_png = _pair(seed=13)
    (tmp_path / "photo.png").write_bytes(image_png)
    (tmp_path / "hole.png").write_bytes(mask_png)
    with Server(create_app(inpainter)) as url:
        browser = _browser()
        try:
            browser.get(url + "/docs")
            WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".opblock-summary")
                                             or "Unable to render" in b.page_source)
            assert "Unable to render" not in browser.page_source
            operation = next(e for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-post")
                             if "/inpaint" in e.text)
            operation.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
            WebDriverWait(browser, 10).until(lambda b: operation.find_elements(By.CSS_SELECTOR, ".try-out__btn"))
            operation.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
            WebDriverWait(browser, 10).until(
                lambda b: len(operation.find_elements(By.CSS_SELECTOR, "input[type=file]")) >= 2)
            files = operation.find_elements(By.CSS_SELECTOR, "input[type=file]")
            files[0].send_keys(str(tmp_path / "photo.png"))
            files[1].send_keys(str(tmp_path / "hole.png"))
            operation.find_element(By.CSS_SELECTOR, ".execute").click()
            WebDriverWait(browser, 60).until(
                lambda b: operation.find_elements(By.CSS_SELECTOR, ".live-responses-table tbody .response-col_status"))
            status = operation.find_element(By.CSS_SELECTOR, ".live-responses-table tbody .response-col_status").text
        finally:
            browser.quit()
    print("the API page's request answered", status)
    assert status.strip().startswith("200"), status


# Hostile clients: declared sizes, stringly booleans, deep JSON, clients that leave, the schema, a fuzzer.

def _declaring(width: int, height: int) -> bytes:
    """A 4 x 4 PNG whose header declares width x height (a few bytes that claim 168 megapixels)."""
    import struct
    import zlib
    data = bytearray(png(np.zeros((4, 4), np.uint8)))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_a_declared_size_past_the_limit_is_413_before_decoding(client, monkeypatch):
    from PIL import ImageFile
    decoded = []   # pixel decoding is ImageFile.load: the header alone must decide
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self.size) or real_load(self))
    response = client.post("/inpaint", files={"image": ("bomb.png", _declaring(12000, 14000)),
                                              "mask": ("m.png", _pair()[3])})
    assert response.status_code == 413 and "12000x14000" in response.json()["detail"], response.text
    assert not decoded


def test_invert_mask_is_parsed_not_truthy(client):
    _, _, image_png, mask_png = _pair(seed=2)
    b64 = {"image": base64.b64encode(image_png).decode(), "mask": base64.b64encode(mask_png).decode()}
    plain = client.post("/inpaint", json=b64).content
    stringly = client.post("/inpaint", json={**b64, "invert_mask": "false"})   # bool("false") inverted
    assert stringly.status_code == 400 and "a JSON boolean" in stringly.json()["detail"]
    assert client.post("/inpaint", json={**b64, "invert_mask": False}).content == plain
    inverted = client.post("/inpaint", json={**b64, "invert_mask": True}).content
    assert inverted != plain
    assert client.post("/inpaint", files={"image": ("i.png", image_png), "mask": ("m.png", mask_png)},
                       data={"invert_mask": "on"}).content == inverted
    bad = client.post("/inpaint", json={**b64, "invert_mask": "maybe"})
    assert bad.status_code == 400 and "invert_mask must be" in bad.json()["detail"]


def test_json_nested_deep_is_a_400_not_a_500(client):
    body = b"[" * 100_000 + b"]" * 100_000
    response = client.post("/inpaint", content=body, headers={"content-type": "application/json"})
    assert response.status_code in (400, 413), response.text
    response = client.post("/inpaint", content=b'{"a":' * 20_000 + b"1" + b"}" * 20_000,
                           headers={"content-type": "application/json"})
    assert response.status_code == 400 and "nested too deep" in response.json()["detail"]


def test_the_openapi_description_documents_the_request_body_and_docs_work_offline(client):
    spec = client.get("/openapi.json").json()["paths"]["/inpaint"]["post"]
    body = spec["requestBody"]["content"]
    assert body["multipart/form-data"]["schema"]["properties"]["image"]["format"] == "binary"
    assert body["application/json"]["schema"]["properties"]["invert_mask"]["type"] == "boolean"
    assert {"200", "400", "413", "415", "503"} <= set(spec["responses"])
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui-bundle.js" in docs.text
    assert "http://" not in docs.text and "https://" not in docs.text    # no CDN
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200


def _fastapi(app):
    """The FastAPI app inside create_app's ASGI middlewares."""
    from fastapi import FastAPI
    while not isinstance(app, FastAPI):
        app = app.app
    return app


def test_a_client_that_leaves_is_not_computed():
    """The second request's client disconnects while the first is being computed: it is dropped, never run."""
    import asyncio
    calls = []

    class Slow(BackendBase):
        multiple = 16

        def describe(self):
            return "slow"

        def __call__(self, image, mask):
            calls.append(image.shape[0])
            time.sleep(0.8)
            return image

    app = create_app(Inpainter(Slow(), batch_size=1), max_batch=1, wait_ms=0)
    _, _, image_png, mask_png = _pair()
    body = (b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"i.png\"\r\n\r\n" + image_png +
            b"\r\n--b\r\nContent-Disposition: form-data; name=\"mask\"; filename=\"m.png\"\r\n\r\n" + mask_png +
            b"\r\n--b--\r\n")
    scope = {"type": "http", "method": "POST", "path": "/inpaint", "raw_path": b"/inpaint", "query_string": b"",
             "headers": [(b"content-type", b"multipart/form-data; boundary=b"),
                         (b"content-length", str(len(body)).encode())], "http_version": "1.1",
             "scheme": "http", "server": ("test", 80), "client": ("test", 1), "root_path": ""}

    async def call(leave_after: float):
        sent, statuses = [False], []
        left_at = asyncio.get_running_loop().time() + leave_after

        async def receive():   # as a server's: the body, then (once the client has gone) a disconnect at once
            if not sent[0]:
                sent[0] = True
                return {"type": "http.request", "body": body, "more_body": False}
            wait = left_at - asyncio.get_running_loop().time()
            if wait > 0:
                await asyncio.sleep(wait)
            return {"type": "http.disconnect"}

        async def send(message):
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
        await app(scope, receive, send)
        return statuses[0]

    async def scenario():
        fastapi_app = _fastapi(app)
        async with fastapi_app.router.lifespan_context(fastapi_app):
            first = asyncio.ensure_future(call(leave_after=60))
            await asyncio.sleep(0.2)                     # the first is running now
            second = await call(leave_after=0.05)        # this client leaves at once
            return await first, second
    first, second = asyncio.run(scenario())
    assert first == 200 and second == 499
    assert len(calls) == 1, calls


def test_the_api_holds_against_a_fuzzer_driven_by_its_own_schema(inpainter):
    """schemathesis generates requests from /openapi.json (bounded: a few dozen per operation) and checks every
    answer: no 5xx, status codes, content types and bodies as the schema documents them."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from schemathesis import checks
    app = create_app(inpainter, max_upload_mb=1, max_megapixels=0.05)
    with TestClient(app):   # starts the batcher (lifespan) for the fuzzer's in-process calls
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        failures, calls = [], {}
        for operation in schema.get_all_operations():
            operation = operation.ok()

            @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            @given(case=operation.as_strategy())
            def fuzz(case):
                calls[f"{case.method} {case.path}"] = calls.get(f"{case.method} {case.path}", 0) + 1
                try:
                    # every check but "schema-valid data is accepted": a schema cannot say which bytes are a
                    # decodable photo of the mask's size, so those are rightly 400s
                    case.call_and_validate(excluded_checks=[checks.positive_data_acceptance])
                except Exception as exc:  # noqa: BLE001 - collected, reported together
                    failures.append(f"{case.method} {case.path}: {str(exc).strip().splitlines()[0]}")
            fuzz()
        print("fuzzed:", calls)
        assert not failures, "\n".join(sorted(set(failures))[:10])
        assert calls.get("POST /inpaint", 0) >= 10 and len(calls) >= 3, calls


@pytest.mark.parametrize("error, status, message", [(MemoryError, 503, "out of memory"),
                                                    (ZeroDivisionError, 500, "inference failed (ZeroDivisionError)")])
def test_failures_answer_one_line_and_log_no_traceback(error, status, message, caplog):
    class Failing(BackendBase):
        multiple = 16

        def describe(self):
            return "failing"

        def __call__(self, image, mask):
            raise error("boom")

    _, _, image_png, mask_png = _pair()
    with TestClient(create_app(Inpainter(Failing()))) as c:
        response = c.post("/inpaint", files={"image": ("i.png", image_png), "mask": ("m.png", mask_png)})
    assert response.status_code == status and message in response.json()["detail"], response.text
    assert "Traceback" not in caplog.text


def test_port_zero_prints_the_port_it_took(tmp_path):
    import subprocess
    import sys
    import urllib.request

    from madf.model.checkpoint import save_checkpoint
    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(build_model(TINY, seed=0), ckpt)
    import queue
    proc = subprocess.Popen([sys.executable, "-m", "madf.cli.serve", "--ckpt", str(ckpt), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: "queue.Queue[str]" = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    try:
        line, seen = "", []
        deadline = time.time() + 60
        while "page http://" not in line and time.time() < deadline:
            try:
                line = lines.get(timeout=1)
                seen.append(line)
            except queue.Empty:
                if proc.poll() is not None:
                    break
        assert "page http://" in line, seen
        port = int(line.split("page http://127.0.0.1:")[1].split("/")[0])
        assert port != 0
        for _ in range(50):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise AssertionError(f"nothing answers on the printed port {port}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_gray_photo_comes_back_gray_with_its_profile(client):
    from PIL import ImageCms
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image, hole, _, mask_png = _pair(seed=4)
    gray = np.asarray(Image.fromarray(image).convert("L"))
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format="PNG", icc_profile=icc)
    response = client.post("/inpaint", files={"image": ("g.png", buffer.getvalue()), "mask": ("m.png", mask_png)})
    assert response.status_code == 200, response.text
    out = Image.open(io.BytesIO(response.content))
    assert out.mode == "L" and out.info.get("icc_profile") == icc
    assert np.array_equal(np.asarray(out)[~hole], gray[~hole])


def test_an_aborted_upload_is_one_log_line_and_no_answer(inpainter, caplog):
    """The client goes away in the middle of its multipart body: no traceback, nothing computed."""
    import asyncio
    app = create_app(inpainter)
    _, _, image_png, _ = _pair()
    part = b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"i.png\"\r\n\r\n" + image_png
    scope = {"type": "http", "method": "POST", "path": "/inpaint", "raw_path": b"/inpaint", "query_string": b"",
             "headers": [(b"content-type", b"multipart/form-data; boundary=b")], "http_version": "1.1",
             "scheme": "http", "server": ("test", 80), "client": ("test", 1), "root_path": ""}
    messages = [{"type": "http.request", "body": part[:500], "more_body": True}, {"type": "http.disconnect"}]
    statuses = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def scenario():
        async with _fastapi(app).router.lifespan_context(_fastapi(app)):
            await app(scope, receive, send)
    with caplog.at_level("INFO", logger="madf"):
        asyncio.run(scenario())
    assert statuses in ([], [499]) and "Traceback" not in caplog.text, (statuses, caplog.text)
    assert "disconnected" in caplog.text


def test_an_empty_mask_answers_the_photo_with_a_header_not_a_log_line(client, caplog):
    import logging
    image, _, image_png, _ = _pair()
    black = png(np.zeros(image.shape[:2], np.uint8))
    with caplog.at_level(logging.INFO, logger="madf"):
        for _ in range(3):
            response = client.post("/inpaint", files={"image": ("i.png", image_png), "mask": ("m.png", black)},
                                   data={"invert_mask": ""})   # an empty form field is "no"
    assert response.status_code == 200 and np.array_equal(decode(response.content), image)
    assert "no hole pixels" in response.headers["x-madf-warning"]
    assert "hole pixels" not in caplog.text and "--invert-mask" not in caplog.text


def test_the_openapi_describes_what_the_routes_answer(client):
    """/health and /info have response schemas that hold their answers; the documented edges are the route's."""
    spec = client.get("/openapi.json").json()
    for path in ("/health", "/info"):
        schema = spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        name = schema["$ref"].rsplit("/", 1)[-1]
        fields = spec["components"]["schemas"][name]["properties"]
        answer = client.get(path).json()
        assert set(answer) == set(fields), (path, sorted(answer), sorted(fields))
    body = spec["paths"]["/inpaint"]["post"]["requestBody"]["content"]
    assert "" in body["multipart/form-data"]["schema"]["properties"]["invert_mask"]["enum"]
    assert body["application/json"]["schema"]["properties"]["image"]["minLength"] == 1
    empty = client.post("/inpaint", json={"image": "", "mask": ""})
    assert empty.status_code == 400   # outside the schema (minLength 1), and refused


def test_create_app_is_a_fastapi_app_a_user_can_extend(inpainter):
    from fastapi import FastAPI
    app = create_app(inpainter, queue_size=3, max_batch=2, replica="r1")
    assert isinstance(app, FastAPI) and app.state.settings.queue_size == 3 and app.state.inpainter is inpainter

    @app.get("/mine")
    async def mine():
        return {"ok": True}
    with TestClient(app) as c:
        assert c.get("/mine").json() == {"ok": True} and c.get("/mine").headers["x-madf-replica"] == "r1"
        image, hole, image_png, mask_png = _pair()
        for _ in range(2):
            assert c.post("/inpaint", files={"image": ("i.png", image_png), "mask": ("m.png", mask_png)}
                          ).status_code == 200
        info = c.get("/info").json()
        assert info["batches_run"] == 2 and info["largest_batch"] == 1
        assert app.state.batcher.batches_run == 2 and not hasattr(app.state.batcher, "batches")


def test_decoded_requests_never_outnumber_what_the_batcher_takes():
    """Many concurrent uploads against a slow model: no more hold decoded images than queue + one batch; the rest
    are answered 503 at once, before they decode."""
    import asyncio

    import httpx

    class Slow(BackendBase):
        multiple = 16

        def describe(self):
            return "slow"

        def __call__(self, image, mask):
            time.sleep(1.0)
            return image

    decoded = []
    app = create_app(Inpainter(Slow()), queue_size=1, max_batch=1, wait_ms=0)
    import madf.serve.routes as routes
    real = routes.decode

    def counting(*args):
        decoded.append(args[2])
        return real(*args)
    _, _, image_png, mask_png = _pair()

    async def scenario():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                calls = [client.post("/inpaint", files={"image": (f"{i}.png", image_png), "mask": ("m.png", mask_png)})
                         for i in range(8)]
                return await asyncio.gather(*calls)
    routes.decode = counting
    try:
        answers = asyncio.run(scenario())
    finally:
        routes.decode = real
    statuses = sorted(a.status_code for a in answers)
    assert app.state.slots.peak <= 2 and app.state.slots.taken == 0, app.state.slots.peak
    assert statuses.count(200) >= 1 and statuses.count(503) >= 3, statuses
    # every request either took a slot and decoded, or was refused before decoding (slots free up as answers go)
    refused = [a for a in answers if a.status_code == 503 and "in progress" in a.json()["detail"]]
    assert len(decoded) + len(refused) == len(answers) and len(refused) >= 3, (decoded, statuses)
    assert all("busy" in a.json()["detail"] for a in answers if a.status_code == 503)
