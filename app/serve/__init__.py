"""citerag over HTTP: the FastAPI app (``app.serve.app.create_app``), the service object it
wraps (``app.serve.service.CiteragService``), the ``serve`` command and the web page (``web/``).

Nothing in ``pipeline``, ``retrievers``, ``verifiers`` or ``eval`` imports this package; the
CLI registers the ``serve`` command from :mod:`app.serve.cli`, which imports only click.
"""
