"""Put files into a cnvrg dataset with the cnvrgv2 SDK: one home for the calls, usable two ways.

* In-process, by :func:`crowdboxes.cnvrg.datasets.publish_cnvrg` when ``cnvrgv2`` imports next to the
  steps' own packages (a user's own environment with cnvrgv2).
* As a script, run by the interpreter of the step image's separate SDK environment (``/opt/cnvrg-sdk``;
  see the Dockerfile): cnvrgv2 1.1.8 pins ``attrs~=22.1`` while toloka-kit's ``cattrs>=25.1`` needs
  ``attrs>=24.3``, so pip cannot install both into one environment. The script imports nothing but the
  standard library and cnvrgv2 (never crowdboxes: that environment has none of its dependencies), reads
  the credentials the SDK reads (cnvrg's job variables ``CNVRG_URL``, ``CNVRG_TOKEN`` ...), and prints
  one JSON line ``{"sha1": ..., "created": ...}``::

      /opt/cnvrg-sdk/bin/python -P cnvrg_put.py --slug SLUG --folder DIR [--message M] NAME [NAME ...]

The calls are the documented ones (cnvrg's own connectors use them): ``Cnvrg().datasets.get(slug)``,
``reload()`` (raises when the dataset does not exist yet, then ``datasets.create(name=slug)``), and
``put_files(paths, message)`` with paths relative to the working folder, which returns the commit sha1
(the latest commit when the files equal it: cnvrg's ``override=False`` makes no empty commit).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any


def put_files_with_sdk(sdk: ModuleType | Any, slug: str, folder: str, names: Sequence[str],
                       message: str = "") -> tuple[str, bool]:
    """Commit ``names`` (files in ``folder``) to dataset ``slug``, creating it if missing.

    Returns ``(sha1, created)``; ``created`` is False when cnvrg kept the latest commit (nothing changed).
    The working folder is restored afterwards.
    """
    cnvrg = sdk.Cnvrg()
    dataset = cnvrg.datasets.get(slug)
    before = None
    try:
        dataset.reload()  # raises when the dataset does not exist yet
        before = getattr(dataset, "last_commit", None)
    except Exception:
        dataset = cnvrg.datasets.create(name=slug)
    cwd = os.getcwd()
    os.chdir(folder)  # the SDK stores paths relative to the working folder
    try:
        sha1 = dataset.put_files(paths=list(names), message=message)
    finally:
        os.chdir(cwd)
    return str(sha1), not (before and str(before) == str(sha1))


def main(argv: Sequence[str] | None = None) -> int:
    """The script's entry: put the files, print ``{"sha1", "created"}`` as one JSON line; 1 on failure."""
    parser = argparse.ArgumentParser(description="Put files into a cnvrg dataset through the cnvrgv2 SDK.")
    parser.add_argument("--slug", required=True, help="dataset slug (created when missing)")
    parser.add_argument("--folder", required=True, help="folder holding the files")
    parser.add_argument("--message", default="", help="commit message")
    parser.add_argument("names", nargs="+", help="file names inside --folder")
    args = parser.parse_args(argv)
    try:
        import cnvrgv2
    except ImportError:
        print(f"cnvrgv2 is not installed for {sys.executable}", file=sys.stderr)
        return 1
    try:
        sha1, created = put_files_with_sdk(cnvrgv2, args.slug, args.folder, args.names, args.message)
    except Exception as exc:  # the SDK raises its own types; one line for the step's log
        print(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
        return 1
    print(json.dumps({"sha1": sha1, "created": created}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
