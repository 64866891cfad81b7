"""`python -m lokal` is the same as the `lokal` command."""

from lokal.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
