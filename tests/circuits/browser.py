"""Load a local HTML page in headless Chromium and report what happened in it.

``load_page(path, action)`` writes a copy of the page next to it with a small harness at the
top of ``<head>``: it records uncaught errors (including scripts or files that fail to load),
``console.error`` calls, unhandled promise rejections and any ``alert()``; after the load
event (and a short delay for plotting) it runs ``action`` (JavaScript that may set
``window.__result``) and writes everything as JSON into the DOM, which Chromium dumps.
No extra Python dependency: just ``chromium --headless --dump-dom``.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
INSTALL_HINT = "headless Chromium is not installed (Debian: apt-get install -y chromium)"

_HARNESS = """<script>(function () {
  var errors = []; window.__alerts = 0;
  function record(m) { errors.push(String(m)); }
  window.addEventListener('error', function (e) {
    var t = e.target;
    record(t && t !== window && (t.src || t.href) ? 'failed to load ' + (t.src || t.href) : e.message);
  }, true);
  window.addEventListener('unhandledrejection', function (e) { record('unhandled rejection: ' + e.reason); });
  var consoleError = console.error;
  console.error = function () { record(Array.prototype.join.call(arguments, ' ')); consoleError.apply(console, arguments); };
  window.alert = function (m) { window.__alerts += 1; record('alert: ' + m); };
  window.addEventListener('load', function () {
    setTimeout(function () {
      try { %ACTION% } catch (e) { record('harness action: ' + e); }
      var out = document.createElement('pre'); out.id = '__harness';
      out.textContent = JSON.stringify({errors: errors, alerts: window.__alerts, title: document.title,
        pwned: window.__pwned === undefined ? null : String(window.__pwned),
        result: window.__result === undefined ? null : window.__result});
      document.body.appendChild(out);
    }, 300);
  });
})();</script>"""


def load_page(page: str | Path, action: str = "", timeout: float = 120) -> tuple[dict, str]:
    """(harness report {errors, alerts, title, pwned, result}, the dumped DOM) for ``page``."""
    page = Path(page).resolve()
    text = page.read_text(encoding="utf-8")
    head = text.index("<head>") + len("<head>")
    probe = page.with_name(f"__probe_{page.name}")
    probe.write_text(text[:head] + _HARNESS.replace("%ACTION%", action) + text[head:], encoding="utf-8")
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            ["nice", "-n", "19", CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--allow-file-access-from-files",
             "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
            capture_output=True, text=True, timeout=timeout)
    probe.unlink()
    found = re.search(r'<pre id="__harness">(.*?)</pre>', proc.stdout, re.S)
    if not found:
        raise AssertionError(f"page did not finish loading; chromium said: {proc.stderr[-2000:]}")
    return json.loads(html.unescape(found.group(1))), proc.stdout
