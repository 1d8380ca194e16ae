"""Console entry point ``stream-app``: builds the app from the settings and runs its Faust CLI,
with settings errors made readable."""

from __future__ import annotations

import asyncio
import sys

from stream_app.settings import SettingsError, load_settings


def main() -> None:
    from stream_app.app import create_app

    try:
        app = create_app(load_settings())
    except SettingsError as exc:
        print(f"stream-app: {exc}", file=sys.stderr)
        print("Fix the environment variables above (or CONNECT_CONFIG_FILE) and run again.", file=sys.stderr)
        sys.exit(2)
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        _create_topics_first(app)
    app.main()


def _create_topics_first(app) -> None:  # type: ignore[no-untyped-def]
    """Create the app's topics, so the first group assignment includes them."""
    try:
        asyncio.run(app.owned.create())
    except Exception as exc:  # the worker itself reports an unreachable broker, with retries
        print(f"stream-app worker: could not create topics up front ({type(exc).__name__}: {exc}); "
              "the worker will create them", file=sys.stderr)


if __name__ == "__main__":
    main()
