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
        out = [f"# {literal(self.title)}", ""]
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

    def html(self, base: Path | None = None) -> str:
        """One self-contained page; ``base`` (the report folder) is where relative links must point."""
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for block in self.blocks:
            kind = block[0]
            if kind == "heading":
                level = min(6, block[1])
                anchor = re.sub(r"[^a-z0-9]+", "-", block[2].lower()).strip("-")
                body.append(f'<h{level} id="{anchor}">{_inline(block[2], base)}</h{level}>')
            elif kind == "text":
                for para in block[1].split("\n\n"):
                    lines = para.splitlines()
                    if lines and all(line.startswith("- ") for line in lines):
                        body.append("<ul>" + "".join(f"<li>{_inline(line[2:], base)}</li>" for line in lines) + "</ul>")
                    else:
                        body.append(f"<p>{_inline(para, base)}</p>")
            elif kind == "table":
                body.append(_html_table(block[1], block[2], block[3]))
            else:
                data = base64.b64encode(block[1].read_bytes()).decode()
                alt = html.escape(block[2], quote=True)
                body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
                            f"<figcaption>{_inline(block[2], base)}</figcaption></figure>")
        return _HTML.format(title=html.escape(self.title), body="\n".join(body))

    def write(self, out_dir: Path, stem: str = "report") -> tuple[Path, Path]:
        out_dir = Path(out_dir)
        md, page = out_dir / f"{stem}.md", out_dir / f"{stem}.html"
        atomic_text(self.markdown(out_dir), md)
        atomic_text(self.html(out_dir), page)
        return md, page


# ---- escaping ------------------------------------------------------------------------------------
# Text blocks, headings and captions are Markdown written by the report code; every value read from a run
# folder (a summary value, a folder name, a config value) goes in through ``literal`` or ``code``, and
# table cells are values as they are.  The HTML writer below escapes everything it does not itself emit
# and makes a link only to http(s) or to a file in the report folder: a value can never become live HTML
# or a javascript: link, whatever the report code forgets.

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#!])")


def literal(value) -> str:
    """``value`` as Markdown text that renders as itself (its Markdown characters backslash-escaped)."""
    return _MD_SPECIAL.sub(r"\\\1", str(value))


def code(value) -> str:
    """``value`` as a Markdown code span (a fence longer than any run of backticks inside it)."""
    text = str(value).replace("\n", " ")
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


_SAFE_RELATIVE = re.compile(r"[A-Za-z0-9._~/%#?=&+-]+")


def safe_href(href: str, base: Path | None = None) -> str | None:
    """``href`` if a report may link to it: an http(s) URL, or a relative path to a file inside the report
    folder ``base`` (it must exist there; without ``base``, any relative path that stays below it).
    None for everything else (javascript:, data:, file:, //host, absolute or escaping paths)."""
    if re.fullmatch(r"https?://[^\s\"'<>\\`\x00-\x1f\x7f]+", href, re.IGNORECASE):
        return href
    if not _SAFE_RELATIVE.fullmatch(href) or href.startswith("/"):
        return None
    path = href.split("#", 1)[0].split("?", 1)[0]
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts or not parts:
        return None
    if base is not None:
        root = Path(base).resolve()
        target = (root / "/".join(parts)).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            return None
    return href


_INLINE = re.compile(r"""
    \\(?P<escaped>[\\`*_\[\]<>|#!(){}.+\-])          # a backslash escape
  | (?P<fence>`+)(?P<code>.+?)(?P=fence)(?!`)        # a code span (its content is not parsed further)
  | \*\*(?P<strong>(?:\\.|[^*])+)\*\*                # **bold**
  | (?<![\w*\\])\*(?P<em>(?:\\.|[^*])+)\*(?![\w*])   # *italic*
  | \[(?P<label>(?:\\.|[^\]\\])+)\]\((?P<href>[^()\s]+)\)   # [text](link)
""", re.VERBOSE | re.DOTALL)


def _inline(text: str, base: Path | None = None) -> str:
    """The few inline Markdown forms the reports use (`code`, **bold**, *italic*, [a](b), backslash
    escapes) as HTML; every other character escaped.  A link whose target ``safe_href`` refuses is
    shown as its plain text."""
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(html.escape(text[pos:m.start()]))
        pos = m.end()
        if m["escaped"] is not None:
            out.append(html.escape(m["escaped"]))
        elif m["code"] is not None:
            inner = m["code"]
            if inner.startswith(" ") and inner.endswith(" ") and inner.strip():
                inner = inner[1:-1]
            out.append(f"<code>{html.escape(inner)}</code>")
        elif m["strong"] is not None:
            out.append(f"<strong>{_inline(m['strong'], base)}</strong>")
        elif m["em"] is not None:
            out.append(f"<em>{_inline(m['em'], base)}</em>")
        else:
            href = safe_href(m["href"], base)
            if href is None:
                out.append(html.escape(m[0]))
            else:
                out.append(f'<a href="{html.escape(href, quote=True)}">{_inline(m["label"], base)}</a>')
    out.append(html.escape(text[pos:]))
    return "".join(out).replace("\n", "<br>")


def _html_table(header, rows, align) -> str:
    """Cells are values: escaped, never parsed as Markdown."""
    align = align or "l" + "r" * (len(header) - 1)
    css = {"l": "left", "r": "right", "c": "center"}
    head = "".join(f'<th style="text-align:{css[a]}">{html.escape(str(h))}</th>' for h, a in zip(header, align))
    body = "".join("<tr>" + "".join(f'<td style="text-align:{css[a]}">{html.escape(_value(v))}</td>'
                                    for v, a in zip(row, align)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _value(v) -> str:
    return "–" if v is None or v == "" else str(v)


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
