"""Render a sample invoice with the invoice service's template, and its first page as the
PNG the README shows (docs/images/invoice-example.png); needs poppler-utils' pdftoppm.

    .venv/bin/python scripts/pdf_sample.py [--lines N] [--pdf out.pdf]

With --lines N the sample has N more lines, to look at an invoice that runs over pages.
"""

import argparse
import subprocess
import tempfile
from datetime import date
from decimal import Decimal
from pathlib import Path

from invoice.models import InvoiceStatus
from invoice.pdf import DocumentLine, InvoiceDocument, Party, render_pdf

ROOT = Path(__file__).resolve().parent.parent
PICTURE = ROOT / "docs" / "images" / "invoice-example.png"
LINES = [
    ("Brand identity workshop (2 days, on site)", "2", "1200.00"),
    ("Logo design — three concepts, two rounds of revisions", "1", "1800.00"),
    (
        "Website design: home, pricing, about and contact pages, responsive layouts for "
        "phone, tablet and desktop",
        "4",
        "650.00",
    ),
    ("Localisation review — 日本語 / Ελληνικά / Русский", "6.5", "85.00"),
    ("Hosting, November", "1", "29.99"),
]


def sample(extra_lines: int) -> InvoiceDocument:
    rows = LINES + [(f"Support ticket #{n}", "0.5", "80.00") for n in range(1, extra_lines + 1)]
    lines = tuple(
        DocumentLine(
            text, Decimal(q), Decimal(p), (Decimal(q) * Decimal(p)).quantize(Decimal("0.01"))
        )
        for text, q, p in rows
    )
    return InvoiceDocument(
        number="INV-000012",
        status=InvoiceStatus.PAID,
        issue_date=date(2026, 11, 2),
        due_date=date(2026, 12, 2),
        currency="EUR",
        total=sum((line.amount for line in lines), Decimal("0.00")),
        seller=Party(
            "Jane Doe",
            "Acme Design Studio Ltd",
            ("12 Harbour Street", "Leith", "EH6 6QP Edinburgh", "GB"),
            "billing@acme.example",
        ),
        client=Party("Müller & Söhne GmbH", email="buchhaltung@mueller.example"),
        lines=lines,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=0)
    parser.add_argument("--pdf", type=Path)
    args = parser.parse_args()
    pdf = render_pdf(sample(args.lines))
    if args.pdf:
        args.pdf.write_bytes(pdf)
        print(f"wrote {args.pdf}")
        return
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "sample.pdf"
        path.write_bytes(pdf)
        stem = PICTURE.with_suffix("")
        subprocess.run(
            ["pdftoppm", "-r", "60", "-png", "-singlefile", str(path), str(stem)], check=True
        )
    print(f"wrote {PICTURE}")


if __name__ == "__main__":
    main()
