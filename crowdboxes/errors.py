"""The library's one error type."""


class CrowdboxesError(Exception):
    """A failure the user can act on: the message names the file, row, field or value.

    A step turns it into one ``error: ...`` line and exit code 2 (``cnvrg.stepkit.run_step``, where
    it is also known as ``StepError``, the CLI's name for it).
    """
