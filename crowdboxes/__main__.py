"""``python -m crowdboxes ...``: the package's command line (:mod:`crowdboxes.cli`)."""

from crowdboxes.cli import main

if __name__ == "__main__":  # importing this module (doctest collection, tools) runs nothing
    raise SystemExit(main())
