"""citerag's HTTP API and web page: ``python serve.py [--index DIR] [--port 8080] ...``.

The same as ``citerag serve`` (see ``python serve.py --help``). The code lives in the
``app.serve`` package; this file stays import-light because vLLM's engine process imports
the main module again when it starts.
"""

from app.serve.cli import main

if __name__ == "__main__":
    main()
