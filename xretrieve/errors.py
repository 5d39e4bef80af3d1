class UserError(Exception):
    """A problem the user can fix (bad input, wrong flag, mismatched artifacts).

    The CLI prints its message on one line and exits non-zero, without a traceback.
    """
