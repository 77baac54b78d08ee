"""The README's picture of madf-serve's page: the bundled model serving a held-out photo, a stroke painted over part
of it with synthetic mouse events in headless Chromium, inpainted. Writes docs/madf-serve.png.

    .venv/bin/python scripts/serve_screenshot.py
"""
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402
from test_serve import Server, _browser  # noqa: E402

from madf.data.assemble import heldout_photos  # noqa: E402
from madf.inpaint.inpainter import Inpainter  # noqa: E402
from madf.serve.app import create_app  # noqa: E402
from madf.weights import BUNDLED  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "madf-serve.png"


def main() -> None:
    photo = heldout_photos(skimage_only=True)[0]
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / photo.name
        shutil.copyfile(photo, local)
        with Server(create_app(Inpainter.from_checkpoint(BUNDLED))) as url:
            browser = _browser(1100, 620)
            try:
                browser.get(url + "/")
                browser.find_element(By.ID, "file").send_keys(str(local))
                body = (By.TAG_NAME, "body")
                WebDriverWait(browser, 20).until(lambda b: b.find_element(*body).get_attribute("data-loaded"))
                canvas = browser.find_element(By.ID, "mask")
                (ActionChains(browser).move_to_element_with_offset(canvas, -60, 40).click_and_hold()
                 .move_by_offset(50, -15).move_by_offset(60, 10).release().perform())
                browser.find_element(By.ID, "go").click()
                WebDriverWait(browser, 60).until(lambda b: b.find_element(*body).get_attribute("data-done"))
                browser.save_screenshot(str(OUT))
            finally:
                browser.quit()
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
