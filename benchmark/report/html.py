"""A self-contained HTML page: inline CSS, images as base64 data URIs, no script, no
external reference of any kind (the page makes no network request when opened)."""

from __future__ import annotations

import base64
import html as html_lib

from benchmark.report.figures import ReportFigure
from benchmark.report.tables import Table, to_html

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1180px;
       color: #1a1a1a; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.8em; }
h3 { font-size: 1.05em; margin-bottom: 0.4em; }
table { border-collapse: collapse; font-size: 0.86em; margin: 0.4em 0 0.6em 0; }
th, td { border: 1px solid #c8c8c8; padding: 0.25em 0.55em; text-align: right; }
td:first-child, th:first-child { text-align: left; }
thead th { background: #eef2f6; }
tr.group th { background: #f7f7f7; text-align: left; font-weight: 600; font-style: italic; }
tbody.published td { color: #555; background: #fbfbf6; }
tbody.ensemble td { background: #f6f8fb; }
td.best { background: #e3f4e3; }
ul.notes { font-size: 0.82em; color: #444; margin-top: 0.2em; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e0e0e0; }
figcaption { font-size: 0.85em; color: #444; }
dl.provenance { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; font-size: 0.88em; }
dl.provenance dt { font-weight: 600; }
dl.provenance dd { margin: 0; font-family: ui-monospace, monospace; word-break: break-all; }
.legend span { display: inline-block; margin-right: 1em; font-size: 0.85em; }
.legend i { display: inline-block; width: 1.6em; height: 0.6em; margin-right: 0.35em; vertical-align: middle; }
"""


def data_uri(png: bytes) -> str:
    """A ``data:image/png;base64,...`` URI of PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_page(
    *,
    title: str,
    intro: str,
    tables: list[Table],
    figures: list[ReportFigure],
    provenance: dict[str, str],
    colours: list[tuple[str, str]],
    notes: list[str],
    evidence: tuple[str, str, Table] | None = None,
) -> str:
    """Assemble the leaderboard page.

    Parameters
    ----------
    colours
        ``(label, hex colour)`` of every model, shown as a legend above the figures.
    notes
        Free-text remarks (missing inputs, figures not drawn).
    evidence
        ``(heading, introduction, table)`` of the section judging the paper's findings,
        placed before the tables.
    """
    esc = html_lib.escape
    body = [f"<h1>{esc(title)}</h1>", f"<p>{esc(intro)}</p>", "<h2>Provenance</h2>", '<dl class="provenance">']
    body += [f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in provenance.items()]
    body.append("</dl>")
    if evidence is not None:
        heading, text, table = evidence
        body += [f'<h2 id="evidence">{esc(heading)}</h2>', f"<p>{esc(text)}</p>", to_html(table)]
    body.append("<h2>Tables</h2>")
    body += [to_html(table) for table in tables]
    body.append("<h2>Figures</h2>")
    body.append('<p class="legend">' + "".join(f'<span><i style="background:{esc(c)}"></i>{esc(label)}</span>'
                                               for label, c in colours) + "</p>")
    for figure in figures:
        body.append(f'<figure id="fig-{esc(figure.name)}"><img src="{data_uri(figure.png)}" alt="{esc(figure.caption)}">'
                    f"<figcaption>{esc(figure.caption)}</figcaption></figure>")
    if notes:
        body.append("<h2>Notes</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            # forbid every fetch except inline data: the page must work offline and stay so
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'\">\n"
            f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")
