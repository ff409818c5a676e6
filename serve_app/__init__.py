"""citerag over HTTP: the FastAPI app (``serve_app.app.create_app``), the service object it
wraps (``serve_app.service.CiteragService``), the ``serve`` command and the web page (``web/``).

Nothing in ``pipeline``, ``retrievers``, ``verifiers`` or ``eval`` imports this package; the
CLI registers the ``serve`` command from :mod:`serve_app.cli`, which imports only click.
"""
