"""The FastAPI demo behind `asgi-guard demo` (needs the `demo` extra: FastAPI and uvicorn).

Importing this package is free; `asgi_guard.demo.app` builds the app when it is imported.
"""
