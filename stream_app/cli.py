"""Console entry point ``stream-app``: the app's Faust CLI, with settings errors made readable."""

from __future__ import annotations

import sys

from stream_app.settings import SettingsError


def main() -> None:
    try:
        from stream_app.app import app
    except SettingsError as exc:
        print(f"stream-app: {exc}", file=sys.stderr)
        print("Fix the environment variables above (or CONNECT_CONFIG_FILE) and run again.", file=sys.stderr)
        sys.exit(2)
    app.main()


if __name__ == "__main__":
    main()
