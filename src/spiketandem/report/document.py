"""A report document: a list of blocks (headings, text, tables, figures) rendered to Markdown (figures
as PNG files alongside) and to one self-contained HTML file (figures embedded)."""
from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..runs import atomic_text
from .tables import markdown_table


@dataclass
class Document:
    title: str
    blocks: list = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("heading", level, text))

    def text(self, text: str) -> None:
        self.blocks.append(("text", text))

    def table(self, header: list[str], rows: list[list], align: str | None = None) -> None:
        self.blocks.append(("table", header, rows, align))

    def figure(self, path: Path, caption: str) -> None:
        """A PNG already written (skipped silently when it was not: nothing to show)."""
        if Path(path).is_file():
            self.blocks.append(("figure", Path(path), caption))

    # ---- rendering ----
    def markdown(self, base: Path) -> str:
        out = [f"# {self.title}", ""]
        for block in self.blocks:
            kind = block[0]
            if kind == "heading":
                out += [f"{'#' * block[1]} {block[2]}", ""]
            elif kind == "text":
                out += [block[1], ""]
            elif kind == "table":
                out += [markdown_table(block[1], block[2], block[3]), ""]
            else:
                rel = block[1].relative_to(base) if block[1].is_relative_to(base) else block[1]
                out += [f"![{block[2]}]({rel.as_posix()})", "", f"*{block[2]}*", ""]
        return "\n".join(out)

    def html(self) -> str:
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for block in self.blocks:
            kind = block[0]
            if kind == "heading":
                level = min(6, block[1])
                anchor = re.sub(r"[^a-z0-9]+", "-", block[2].lower()).strip("-")
                body.append(f'<h{level} id="{anchor}">{_inline(block[2])}</h{level}>')
            elif kind == "text":
                for para in block[1].split("\n\n"):
                    lines = para.splitlines()
                    if lines and all(line.startswith("- ") for line in lines):
                        body.append("<ul>" + "".join(f"<li>{_inline(line[2:])}</li>" for line in lines) + "</ul>")
                    else:
                        body.append(f"<p>{_inline(para)}</p>")
            elif kind == "table":
                body.append(_html_table(block[1], block[2], block[3]))
            else:
                data = base64.b64encode(block[1].read_bytes()).decode()
                body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block[2])}">'
                            f"<figcaption>{_inline(block[2])}</figcaption></figure>")
        return _HTML.format(title=html.escape(self.title), body="\n".join(body))

    def write(self, out_dir: Path, stem: str = "report") -> tuple[Path, Path]:
        out_dir = Path(out_dir)
        md, page = out_dir / f"{stem}.md", out_dir / f"{stem}.html"
        atomic_text(self.markdown(out_dir), md)
        atomic_text(self.html(), page)
        return md, page


def _inline(text: str) -> str:
    """Escape, then the few inline Markdown forms the reports use: `code`, **bold**, *italic*, [a](b)."""
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"(?<![\w*])\*([^*]+)\*(?![\w*])", r"<em>\1</em>", text)
    text = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r'<a href="\2">\1</a>', text)
    return text.replace("\n", "<br>")


def _html_table(header, rows, align) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    css = {"l": "left", "r": "right", "c": "center"}
    head = "".join(f'<th style="text-align:{css[a]}">{_inline(str(h))}</th>' for h, a in zip(header, align))
    body = "".join("<tr>" + "".join(f'<td style="text-align:{css[a]}">{_inline("–" if v is None else str(v))}</td>'
                                    for v, a in zip(row, align)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }}
h1, h2, h3 {{ border-bottom: 1px solid #ddd; padding-bottom: .2em; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }}
th, td {{ border: 1px solid #ccc; padding: .3em .6em; }}
th {{ background: #f4f4f4; }}
tr:nth-child(even) td {{ background: #fafafa; }}
figure {{ margin: 1.2em 0; }}
figure img {{ max-width: 100%; border: 1px solid #eee; }}
figcaption {{ color: #555; font-size: 0.9em; }}
code {{ background: #f4f4f4; padding: 0 .25em; border-radius: 3px; }}
</style></head>
<body>
{body}
</body></html>
"""
