"""The micro demo's HTML report in a real browser: headless Chromium (Debian's `chromium`)
opens results' report.html, a reader's clicks show every figure, and the test checks that each
image loads, the screenshots are not blank and the console logged no error.

Chromium is driven through the DevTools protocol over a pipe (--remote-debugging-pipe: JSON
messages ending in NUL on file descriptors 3 and 4), which needs nothing beyond the standard
library; the screenshots are left beside the report for a person to look at."""

import base64
import json
import os
import select
import shutil
import subprocess
import time

import pytest
from PIL import Image

from conftest import snakemake

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install chromium)")


class Page:
    """One headless Chromium tab, driven through the DevTools protocol."""

    def __init__(self, width=1400, height=1000, timeout=60):
        to_browser, self._out = os.pipe()
        self._in, from_browser = os.pipe()

        def on_fds_3_and_4():  # in the child: the protocol's fixed descriptors
            os.dup2(to_browser, 3)
            os.dup2(from_browser, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             f"--window-size={width},{height}", "about:blank"],
            preexec_fn=on_fds_3_and_4, pass_fds=(3, 4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        self.timeout, self._buf, self._id, self.events = timeout, b"", 0, []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", tab=True)

    def _message(self) -> dict:
        while b"\0" not in self._buf:
            if not select.select([self._in], [], [], self.timeout)[0]:
                raise TimeoutError(f"chromium sent nothing for {self.timeout} s")
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, tab=False, **params):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params} | ({"sessionId": self.session} if tab else {})
        os.write(self._out, json.dumps(msg).encode() + b"\0")
        while (reply := self._message()).get("id") != self._id:
            self.events.append(reply)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def js(self, expression):
        result = self.call("Runtime.evaluate", tab=True, expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression, what, timeout=30):
        end = time.monotonic() + timeout
        while not self.js(expression):
            if time.monotonic() > end:
                raise TimeoutError(f"{what} did not happen within {timeout} s")
            time.sleep(0.2)

    def click(self, js_element, what):
        self.wait_for(f"!!({js_element})", what)
        self.js(f"({js_element}).click()")

    def screenshot(self, path):
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", tab=True, format="png")["data"]))
        return path

    def errors(self) -> list[str]:
        """Uncaught exceptions, console.error calls and browser log entries of level error."""
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(p["exceptionDetails"].get("text", "") + str(p["exceptionDetails"].get("exception", "")))
            elif m == "Runtime.consoleAPICalled" and p["type"] == "error":
                out.append(" ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
            elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(p["entry"]["text"])
        return out

    def close(self):
        try:
            self.call("Browser.close")
        except (RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._in)
        os.close(self._out)


def not_blank(png) -> bool:
    """More than a few colours and not one colour over 97 % of the pixels."""
    img = Image.open(png).convert("RGB")
    colours = img.getcolors(maxcolors=1 << 20) or []
    return len(colours) > 50 and max(n for n, _ in colours) < 0.97 * img.width * img.height


def menu(name):
    return f"Array.from(document.querySelectorAll('a')).find(a => a.innerText.trim() == '{name}')"


def eye(label):
    return (f"Array.from(document.querySelectorAll('tr')).find(r => r.cells[0] && r.cells[0].innerText.trim() == "
            f"'{label}')?.querySelector('a[iconname=eye]')")


def shown(filename):
    """The displayed image of that file, once it has loaded."""
    img = f"Array.from(document.images).find(i => i.src.includes('filename={filename};'))"
    return f"{img}?.complete && {img}.naturalWidth > 300"


@pytest.fixture(scope="module")
def report(micro):
    path = micro / "report.html"
    if not path.is_file():  # test_pipeline builds it; alone, this test builds it itself
        res = snakemake("--cores", "1", "-d", micro, "--configfile", micro / "micro.yaml", "--report", path)
        assert res.returncode == 0, res.stderr[-3000:]
    page = Page()
    yield page, path
    page.close()


def open_report(page, path, category=None):
    """The report's start page, freshly loaded, then optionally one category of results."""
    page.call("Page.navigate", tab=True, url=path.as_uri())
    page.wait_for(f"!!({menu('Figures')}) && document.readyState == 'complete'", "the report's menu")
    if category:
        page.click(menu(category), f"the {category} category")


def test_front_page_says_what_the_report_is(report):
    page, path = report
    open_report(page, path)
    text = page.js("document.body.innerText")
    assert "Negative vs positive reinforcement across model sizes" in text
    assert "tiny-a, tiny-b" in text  # the run's own configuration, rendered into the page
    assert "11 of the paper's claims × 2 models = 22 verdicts" in text  # the findings, in words
    assert not_blank(page.screenshot(path.parent / "report-front.png"))


FIGURES = ["training_curves_smoothed", "final_performance_comparison", "passk_curves", "model_size"]


def test_every_figure_shows_and_its_image_loads(report):
    page, path = report
    open_report(page, path, "Figures")
    for figure in FIGURES:
        page.click(eye(figure), f"the {figure} entry")
        page.wait_for(shown(f"{figure}.png"), f"{figure}'s image")
        assert not_blank(page.screenshot(path.parent / f"report-{figure}.png")), figure


@pytest.mark.parametrize("category, label, image", [("Data", "strata figure", "strata.png"),
                                                    ("Findings", "verdict figure", "findings_verdicts.png")])
def test_figure_outside_figures_shows(report, category, label, image):
    page, path = report
    open_report(page, path, category)
    page.click(eye(label), f"the {label} entry")
    page.wait_for(shown(image), f"the {label}'s image")
    assert not_blank(page.screenshot(path.parent / f"report-{image}"))


def test_console_has_no_errors(report):
    page, _ = report
    assert page.errors() == []
