"""A report written twice from the same content: ``report.md`` and a self-contained ``report.html``.

The HTML embeds every image as base64, so the file can be mailed or opened anywhere; the
markdown links the images by relative path. Content is added in order with the ``add_*``
methods and written with :meth:`Report.write`.
"""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from diffusion_reward.utils.checkpoint import atomic_write_text

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #2a7;padding-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .6em;
text-align:right}th{background:#f3f3f3}td:first-child,td:nth-child(2),th:first-child{text-align:left}
figure{margin:1em 0}img{max-width:100%;image-rendering:pixelated;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}code{background:#f5f5f5;padding:0 .2em}
.note{background:#f6fbf8;border-left:4px solid #2a7;padding:.5em 1em}
"""


@dataclass
class Report:
    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("heading", (level, text)))

    def text(self, text: str, note: bool = False) -> None:
        """A paragraph; ``**bold**`` and `` `code` `` are rendered in both formats."""
        self.blocks.append(("text", (text, note)))

    def image(self, path: str | os.PathLike, caption: str = "") -> None:
        self.blocks.append(("image", (Path(path), caption)))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.blocks.append(("table", (list(header), [list(r) for r in rows])))

    def write(self, directory: str | os.PathLike, stem: str = "report") -> tuple[Path, Path]:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        md_path, html_path = directory / f"{stem}.md", directory / f"{stem}.html"
        atomic_write_text(md_path, self.markdown(directory))
        atomic_write_text(html_path, self.html())
        return md_path, html_path

    def markdown(self, directory: Path) -> str:
        out = [f"# {self.title}", ""]
        for kind, value in self.blocks:
            if kind == "heading":
                level, text = value
                out += ["#" * level + " " + text, ""]
            elif kind == "text":
                text, note = value
                out += [("> " + text) if note else text, ""]
            elif kind == "image":
                path, caption = value
                rel = os.path.relpath(path, directory)
                out += [f"![{caption}]({rel})", "", f"*{caption}*" if caption else "", ""]
            elif kind == "table":
                header, rows = value
                out.append("| " + " | ".join(map(str, header)) + " |")
                out.append("|" + "---|" * len(header))
                out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
                out.append("")
        return "\n".join(out)

    def html(self) -> str:
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for kind, value in self.blocks:
            if kind == "heading":
                level, text = value
                body.append(f"<h{level}>{html.escape(text)}</h{level}>")
            elif kind == "text":
                text, note = value
                cls = ' class="note"' if note else ""
                body.append(f"<p{cls}>{_inline(text)}</p>")
            elif kind == "image":
                path, caption = value
                if not path.exists():
                    body.append(f"<p><em>missing image {html.escape(str(path.name))}</em></p>")
                    continue
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                mime = "image/gif" if path.suffix == ".gif" else "image/png"
                body.append(f'<figure><img alt="{html.escape(caption)}" src="data:{mime};base64,{data}">'
                            f"<figcaption>{_inline(caption)}</figcaption></figure>")
            elif kind == "table":
                header, rows = value
                head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
                trs = "".join("<tr>" + "".join(f"<td>{_inline(_cell(c))}</td>" for c in row) + "</tr>"
                              for row in rows)
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>")
        return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>"
                + "\n".join(body) + "</body></html>\n")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "–"
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _inline(text: str) -> str:
    import re

    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"`(.+?)`", r"<code>\1</code>", out)
    return out


@dataclass(frozen=True)
class GeneratedBlock:
    """A part of a Markdown file (the README) that a command writes from result files, between two comment
    lines; tests compare it with what the committed results give."""

    name: str  # "rl-benchmark"
    how: str  # "generated from the records by plot-rl --readme"

    @property
    def begin(self) -> str:
        return f"<!-- {self.name}: {self.how}, do not edit -->"

    @property
    def end(self) -> str:
        return f"<!-- /{self.name} -->"

    def read(self, path: str | os.PathLike) -> str:
        """The block's text as the file has it now ("" when the file has no such block)."""
        content = Path(path).read_text()
        if self.begin not in content:
            return ""
        return content.split(self.begin, 1)[1].split(self.end, 1)[0].strip()

    def write(self, path: str | os.PathLike, text: str) -> None:
        """Replace the block's text; a file without the block is a one-line error saying what to add."""
        from diffusion_reward.errors import UserError

        path = Path(path)
        content = path.read_text()
        if self.begin not in content or self.end not in content:
            raise UserError(f"{path}: no generated block to replace; add the lines\n{self.begin}\n{self.end}")
        head, rest = content.split(self.begin, 1)
        _, tail = rest.split(self.end, 1)
        atomic_write_text(path, f"{head}{self.begin}\n{text.rstrip()}\n{self.end}{tail}")
