"""(filled in by its section of docs/theory.md)"""

__all__: list[str] = []
