"""Notebook -> flow translation, shared by the ``%%flow`` magic and the script export.

- ``cells``: turn a cell's source into a flow whose body runs the cell in a namespace.
"""
