"""The app layer, the roof: the ``citerag`` CLI, the component factory, the LangChain
runnables and the HTTP server (``app.serve``). Only this package imports every other one and
assembles real components (:mod:`app.factory`); nothing below imports it (ARCHITECTURE.md).
"""
