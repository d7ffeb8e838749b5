"""What the entry points print and draw: text, tables, charts and progress bars. Only the
entry points import it.
"""
