"""The notebook layer: magics, the live RunView widget and the display hooks.

Thin by design: it translates notebook concepts into engine calls and shows engine events.
Imported only when a flow run needs a view or when ``%load_ext orion_nb`` runs.
"""
