"""A render that waits for the test's word, for tests of the rendering processes.

It runs in a rendering process of the app's pool, so it lives in a module of its own that
the process can import, and it talks to the test through files in a folder both can see:
`started-<pid>` when it begins, and it carries on only once the test has made `open`.
"""

import os
import time
from pathlib import Path

from invoice.pdf import InvoiceDocument, render_pdf

OPEN = "open"


def gated_render(folder: Path, document: InvoiceDocument) -> bytes:
    (folder / f"started-{os.getpid()}").touch()
    while not (folder / OPEN).exists():
        time.sleep(0.01)
    return render_pdf(document)


def started_in(folder: Path) -> set[int]:
    """The process ids of the renders that have begun."""
    return {int(path.name.removeprefix("started-")) for path in folder.glob("started-*")}
