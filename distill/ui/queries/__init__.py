"""What the pages read: typed, keyword-only query functions over small columns, paginated, never
a whole table's text. Each module serves one page."""
