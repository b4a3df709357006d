"""Aligned pipe tables: readable in a terminal and valid Markdown in report files."""


def format_cell(value):
  if isinstance(value, float):
    return f"{value:,.2f}"
  if isinstance(value, int) and not isinstance(value, bool):
    return f"{value:,}"
  return "" if value is None else str(value)


def markdown_table(headers, rows):
  cells = [[format_cell(v) for v in row] for row in rows]
  widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
  numeric = [
    all(isinstance(row[i], (int, float)) or row[i] is None for row in rows)
    for i in range(len(headers))
  ]

  def line(values):
    padded = (v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric))
    return "| " + " | ".join(padded) + " |"

  rule = (
    "|"
    + "|".join(("-" * (w + 1) + ":") if num else ("-" * (w + 2)) for w, num in zip(widths, numeric))
    + "|"
  )
  return "\n".join([line([str(h) for h in headers]), rule] + [line(r) for r in cells])
