"""What `snakemake --report` shows of a rule's tables: each Markdown table as an HTML page, and the facts that every
caption of the rule's report items names.

Snakemake's report viewer shows HTML pages and images; any other file (a `.md` table) is only a download. So a rule
that writes tables ends its shell command with `python -m alignrepro.report_pages`, which writes

- `<table>.html` for each `<table>.md` (markdown-it-py, a maintained CommonMark parser, with GFM tables; raw HTML
  in the Markdown is escaped), headed by the same facts, and
- one facts file (reStructuredText): the tier, each judge of the rule's numbers with its judge card's pairwise
  agreement (95 % CI, n), and the heuristic warning where a judge is the ci tier's heuristic. The caption files
  (`report/*.rst` beside each rules file) include it (`.. include::`), so a caption says what its item is and
  under which tier and judge it was made, from the files of the run, not from retyped text.
"""

from __future__ import annotations

import argparse
import html
import math
from dataclasses import dataclass
from pathlib import Path

from alignrepro.errors import UserError
from alignrepro.io import atomic_write_text, read_json

HEURISTIC_WARNING = "is a HEURISTIC judge (ci tier only): the numbers it judged mean nothing"
NO_JUDGE = "none (these numbers are judge-free)"


@dataclass(frozen=True)
class JudgeFacts:
    """One judge card, as a caption names it."""

    name: str
    judge_id: str
    agreement: float | None
    ci95: tuple[float, float] | None
    n: int | None
    heuristic: bool

    @classmethod
    def from_card(cls, path: Path) -> JudgeFacts:
        try:
            card = read_json(path)
            pw = card.get("pairwise") or {}
            ci = pw.get("ci95")
            return cls(
                name=str(card["name"]),
                judge_id=str(card["judge_id"]),
                agreement=pw.get("agreement"),
                ci95=(float(ci[0]), float(ci[1])) if ci else None,
                n=pw.get("n"),
                heuristic=bool(card.get("heuristic")),
            )
        except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
            raise UserError(f"judge card {path}: not a judge card ({type(e).__name__}: {e})") from e

    def agreement_text(self) -> str:
        if self.agreement is None or (isinstance(self.agreement, float) and math.isnan(self.agreement)):
            return "no pairwise agreement measured"
        ci = f" [{self.ci95[0]:.1f}, {self.ci95[1]:.1f}]" if self.ci95 else ""
        n = f", n={self.n}" if self.n is not None else ""
        return f"pairwise agreement with the labelled set {self.agreement:.1f} %{ci}{n}"


@dataclass(frozen=True)
class Facts:
    """What every report item of one rule says about how its numbers were made."""

    tier: str
    judges: tuple[JudgeFacts, ...]

    @property
    def heuristic(self) -> bool:
        return any(j.heuristic for j in self.judges)

    def warning(self) -> str:
        """The heuristic warning the tables carry, naming the judge(s), or "" when no judge is a heuristic."""
        ids = [j.judge_id for j in self.judges if j.heuristic]
        return f"{', '.join(ids)} {HEURISTIC_WARNING}." if ids else ""

    def rst(self) -> str:
        """A bullet list (and a warning admonition) for the caption files to include."""
        lines = [f"- tier: ``{self.tier}``"]
        if not self.judges:
            lines.append(f"- judge: {NO_JUDGE}")
        for j in self.judges:
            lines.append(f"- judge: ``{j.judge_id}`` (card ``{j.name}``: {j.agreement_text()})")
        if self.heuristic:
            lines += ["", f".. warning:: {self.warning()}"]
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        """The same facts as the head of a table's page."""
        judges = [
            f"judge <code>{html.escape(j.judge_id)}</code> (card <code>{html.escape(j.name)}</code>: "
            f"{html.escape(j.agreement_text())})"
            for j in self.judges
        ] or [f"judge: {NO_JUDGE}"]
        out = f'<p class="facts">tier <code>{html.escape(self.tier)}</code> · {" · ".join(judges)}</p>\n'
        if self.heuristic:
            out += f'<p class="warning">⚠ {html.escape(self.warning())}</p>\n'
        return out


def load_facts(tier: str, cards: list[Path]) -> Facts:
    unique = list(dict.fromkeys(Path(c) for c in cards))
    return Facts(tier=tier, judges=tuple(JudgeFacts.from_card(c) for c in unique))


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; font-size: 14px;
       line-height: 1.45; color: #1f2328; margin: 1.2em 1.6em; }
h1 { font-size: 1.35em; } h2 { font-size: 1.15em; margin-top: 1.6em; } h3 { font-size: 1.05em; }
code { background: #f3f4f6; padding: 0 .25em; border-radius: 3px; font-size: .92em; }
.facts { color: #57606a; border-bottom: 1px solid #d0d7de; padding-bottom: .5em; }
.warning { background: #fff1f0; border: 1px solid #cf222e; color: #a40e26; padding: .45em .7em; border-radius: 4px;
           font-weight: 600; }
.table-wrap { overflow-x: auto; margin: .6em 0 1em; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: .28em .6em; text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
tbody tr:nth-child(even) { background: #fafbfc; }
footer { color: #8c959f; font-size: 12px; margin-top: 2em; }
"""


def markdown_html(text: str) -> str:
    """The body of a Markdown file as HTML: CommonMark plus GFM tables and strikethrough; raw HTML escaped."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
    body = md.render(text)
    # a wide table scrolls inside the page instead of widening it
    return body.replace("<table>", '<div class="table-wrap"><table>').replace("</table>", "</table></div>")


def page(text: str, source: str, facts: Facts) -> str:
    """A standalone HTML page: the facts, then the Markdown file rendered, then where it came from."""
    title = next((ln.lstrip("#").strip() for ln in text.splitlines() if ln.startswith("#")), Path(source).stem)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"{facts.html()}{markdown_html(text)}"
        f"<footer>rendered from <code>{html.escape(source)}</code> for <code>snakemake --report</code>"
        "</footer>\n</body>\n</html>\n"
    )


def write(pages: list[tuple[Path, Path]], facts: Facts, facts_out: Path | None) -> None:
    for md_path, html_path in pages:
        try:
            text = Path(md_path).read_text(encoding="utf-8")
        except OSError as e:
            raise UserError(f"table {md_path}: cannot be read ({e.strerror})") from e
        atomic_write_text(html_path, page(text, str(md_path), facts))
    if facts_out is not None:
        atomic_write_text(facts_out, facts.rst())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m alignrepro.report_pages", description=__doc__.split("\n")[0])
    ap.add_argument("--tier", required=True, help="the tier the tables were made at")
    ap.add_argument("--cards", nargs="*", type=Path, default=[], help="judge cards (JSON) of the tables' judges")
    ap.add_argument("--page", nargs=2, action="append", type=Path, default=[], metavar=("MD", "HTML"),
                    help="a Markdown table and the HTML page to write for it (repeatable)")  # fmt: skip
    ap.add_argument("--facts", type=Path, help="where to write the facts (reStructuredText) the captions include")
    args = ap.parse_args(argv)
    if not args.page and args.facts is None:
        ap.error("nothing to write: give --page MD HTML and/or --facts")
    write([(md, out) for md, out in args.page], load_facts(args.tier, args.cards), args.facts)


if __name__ == "__main__":
    main()
